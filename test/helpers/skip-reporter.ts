/**
 * Ends every run with the list of what was skipped and why, so nothing is skipped silently. A test
 * skipped for a missing program carries the reason in its title (test/helpers/optional.ts); one skipped
 * with `ctx.skip(note)` carries its note. Runs in the main vitest process, so it sees the results of
 * every worker whatever the pool.
 */
import type { Reporter, TestModule, Vitest } from 'vitest/node';
import { SKIP_MARK, ciMode } from './optional.js';

export default class SkipReporter implements Reporter {
  private log: (msg: string) => void = (msg) => process.stdout.write(`${msg}\n`);
  private filtered = false;

  onInit(vitest: Vitest): void {
    this.log = (msg) => vitest.logger.log(msg);
    this.filtered = vitest.config.testNamePattern !== undefined;
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const byReason = new Map<string, Map<string, number>>(); // reason -> file -> tests
    for (const mod of testModules) {
      for (const test of mod.children.allTests()) {
        const result = test.result();
        if (result.state !== 'skipped') continue;
        const name = test.fullName;
        const at = name.indexOf(SKIP_MARK);
        const reason =
          at >= 0
            ? `${name.slice(at + SKIP_MARK.length, name.indexOf(']', at))} is not installed`
            : (result.note ?? (test.options.mode === 'todo' ? 'todo' : this.filtered ? 'not selected by -t' : 'skipped without a reason'));
        const files = byReason.get(reason) ?? new Map<string, number>();
        files.set(mod.relativeModuleId, (files.get(mod.relativeModuleId) ?? 0) + 1);
        byReason.set(reason, files);
      }
    }
    if (byReason.size === 0) {
      this.log('\nNothing was skipped.');
      return;
    }
    const lines = ['', 'Skipped tests, and why:'];
    for (const [reason, files] of [...byReason].sort(([a], [b]) => a.localeCompare(b))) {
      const total = [...files.values()].reduce((a, b) => a + b, 0);
      lines.push(`  ${reason}: ${total} test${total === 1 ? '' : 's'}`);
      for (const [file, n] of files) lines.push(`    ${file} (${n})`);
    }
    if (!ciMode()) lines.push('Install the packages named above to run them; under CI=true a missing program fails the run.');
    this.log(lines.join('\n'));
  }
}
