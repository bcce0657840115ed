/**
 * Issue 29 item 9, quiet by default so that cron mail means something: a level 0 that was asked for
 * (--full) or is the chain's ordinary renewal (--full-every) is no warning; the run prints nothing on
 * stderr at all.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { describeRun, run } from '../helpers/cli.js';
import { makeApp, rmrf } from '../helpers/fixtures.js';

const apps: string[] = [];
afterAll(() => apps.forEach(rmrf));

describe('a routine or asked-for level 0 is not a warning', () => {
  it('create --type storage --full, and a base older than --full-every: stderr stays empty', async () => {
    const app = makeApp({ randomBytes: 4096, events: 5 });
    apps.push(app.cwd);
    const first = await run(['create', '--type', 'storage', ...app.flags], { cwd: app.cwd });
    expect(first.code, describeRun(first)).toBe(0);
    // a marked directory: its own warning (init --adopt) is not what this test is about
    expect((await run(['init', '--adopt', ...app.flags], { cwd: app.cwd })).code).toBe(0);
    for (const extra of [['--full'], ['--full-every', '0s']]) {
      const r = await run(['create', '--type', 'storage', ...extra, ...app.flags], { cwd: app.cwd });
      expect(r.code, describeRun(r)).toBe(0);
      expect(r.stdout).toMatch(/level 0/);
      expect(r.stderr, describeRun(r)).toBe('');
    }
  });
});

describe('no AWS SDK banner', () => {
  // the banner is printed under Node < 22 only; on a newer Node this test cannot fail
  it('an S3 command prints no NodeVersionSupportWarning (the pinned SDK supports this Node)', async () => {
    const cwd = makeApp({ randomBytes: 1024, events: 2 }).cwd;
    apps.push(cwd);
    const r = await run(['remote', 'test', 's3://bucket/p?endpoint=http://127.0.0.1:9&max_attempts=1'], {
      cwd,
      env: { AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y' },
    });
    expect(r.code, describeRun(r)).toBe(1);
    expect(r.stdout).toMatch(/FAIL connect/);
    expect(r.stderr).not.toMatch(/NodeVersionSupportWarning|Warning:/);
  });
});
