/**
 * Issue 13, item 1: not on a terminal (journal, cron mail, a pipe) progress is one plain line every
 * --progress-interval seconds with done/total and files; --quiet and --json print none.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';
import { needs } from '../helpers/optional.js';

let app: AppFixture;
beforeAll(() => {
  // xz -T0 on incompressible data: several seconds, most of it after the last byte was read
  app = makeApp({ randomBytes: 6 * 1024 * 1024, events: 100 });
});
afterAll(() => rmrf(app?.cwd));

const args = () => ['create', '--type', 'storage', '--compression', 'xz', '--progress-interval', '0.2', ...app.flags];

needs('xz', 'xz-utils').describe('progress without a terminal', () => {
  it('plain lines with done/total, percent and files, no escape codes', async () => {
    const r = await run(args(), { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('progress: '));
    expect(lines.length, r.stderr).toBeGreaterThanOrEqual(1);
    expect(lines[0]).toMatch(/^progress: storage \d{8}_\d{6}: [\d.]+ \S+ \/ [\d.]+ MiB \(\d+%\), \d+\/\d+ files/);
    expect(lines[0]).toMatch(/elapsed$/);
    expect(r.stderr).not.toMatch(/\x1b\[/);
  });

  it('xz holding read bytes it has not compressed: percent and ETA count them as still to do (issue 29 item 10)', async () => {
    // 16 MiB of random data is one xz block: read at once, then compressed for seconds
    const big = makeApp({ randomBytes: 16 * 1024 * 1024, events: 10 });
    try {
      const r = await run(['create', '--type', 'storage', '--compression', 'xz', '--progress-interval', '0.2', ...big.flags], { cwd: big.cwd, timeoutMs: 180_000 });
      expect(r.code, describeRun(r)).toBe(0);
      const lines = r.stderr.split('\n').filter((l) => l.startsWith('progress: '));
      // everything read, not yet all compressed: an ETA and the backlog, not "(100%) … finishing"
      const held = lines.filter((l) => /, (\d+\/\d+) files, .*ETA .*, [\d.]+ \S+ read, not yet compressed/.test(l));
      expect(held.length, r.stderr).toBeGreaterThanOrEqual(1);
      expect(held[0], r.stderr).not.toMatch(/\(100%\)|finishing/);
    } finally {
      rmrf(big.cwd);
    }
  });

  it('restore shows unpacked/total bytes and entries from the sidecar, not the size of one entry', async () => {
    const c = await run(args(), { cwd: app.cwd });
    expect(c.code, describeRun(c)).toBe(0);
    const target = `${app.cwd}/restore-progress`;
    const r = await run(['restore', 'latest', '--target', target, '--yes', '--no-verify', '--progress-interval', '0.01', ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('progress: restoring'));
    expect(lines.length, r.stderr).toBeGreaterThanOrEqual(1);
    for (const l of lines) expect(l).toMatch(/^progress: restoring \d{8}_\d{6}: [\d.]+ \S+ \/ [\d.]+ MiB \(\d+%\), \d+\/\d+ files/);
  });

  it('--quiet prints no progress', async () => {
    const r = await run([...args(), '--quiet'], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stderr).not.toMatch(/progress/);
  });

  it('--json prints no progress and stdout stays one document', async () => {
    const r = await run([...args(), '--json'], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stderr).not.toMatch(/progress/);
    expect(parseJsonStdout<{ ok: boolean }>(r).ok).toBe(true);
  });

  it('a bad --progress-interval is an argument error', async () => {
    const r = await run(['list', '--progress-interval', 'soon', ...app.flags], { cwd: app.cwd });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--progress-interval must be a number of seconds, got 'soon'/);
  });
});
