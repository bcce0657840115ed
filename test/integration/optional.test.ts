import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ciMode, findProgram } from '../helpers/optional.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const FIXTURE_CONFIG = path.join(REPO, 'test', 'integration', 'needs-fixture', 'vitest.config.ts');

/** vitest on a file whose tests need a program that does not exist */
function runFixture(ci: string | undefined) {
  const env = { ...process.env };
  delete env.CI;
  if (ci !== undefined) env.CI = ci;
  const r = spawnSync(process.execPath, [path.join(REPO, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--config', FIXTURE_CONFIG], {
    cwd: REPO,
    env: { ...env, NO_COLOR: '1', FORCE_COLOR: '0' },
    encoding: 'utf8',
  });
  return { code: r.status, out: r.stdout + r.stderr };
}

describe('optional programs', () => {
  it('are found on PATH or by absolute path', () => {
    expect(findProgram('node', { PATH: path.dirname(process.execPath) })).toBe(process.execPath);
    expect(findProgram('node', { PATH: '/nonexistent' })).toBeUndefined();
    expect(findProgram(process.execPath, { PATH: '' })).toBe(process.execPath);
    expect(findProgram('/nonexistent/sshd')).toBeUndefined();
  });

  it('CI is on for CI=true or 1 only', () => {
    expect(ciMode({ CI: 'true' })).toBe(true);
    expect(ciMode({ CI: '1' })).toBe(true);
    expect(ciMode({ CI: 'false' })).toBe(false);
    expect(ciMode({})).toBe(false);
  });

  it('without CI, a missing program skips its tests, names the package, and the run ends with the skip list', () => {
    const r = runFixture(undefined);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/Skipped tests, and why:\n {2}vb-no-such-program \(Debian package vb-no-such-package\) is not installed: 3 tests\n {4}needs\.fixture\.ts \(3\)/);
    expect(r.out).toMatch(/2 passed \| 3 skipped/);
  });

  it('under CI=true, a missing program fails the run, naming the package to install', () => {
    const r = runFixture('true');
    expect(r.code, r.out).toBe(1);
    expect(r.out).toContain('vb-no-such-program is not installed, and CI=true runs every test: apt-get install vb-no-such-package');
    expect(r.out).toMatch(/3 failed \| 2 passed/);
    expect(r.out).toContain('Nothing was skipped.');
  });
});
