/**
 * Issue 13, item 7: the scheduler's first start in an empty backup directory runs no "missed" backup,
 * and Ctrl-C (SIGINT) ends it with exit 130.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { start } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';

let app: AppFixture | undefined;
afterAll(() => rmrf(app?.cwd));

describe('schedule', () => {
  it('first start in an empty backup directory: nothing "missed" runs; SIGINT exits 130', async () => {
    app = makeApp({ randomBytes: 64 * 1024, events: 50, minimalStorage: true });
    // a schedule whose previous run was a minute or two ago, well inside a generous grace time
    const m = (new Date().getMinutes() + 58) % 60;
    const env = {
      BACKUP_FULL_SCHEDULE: `${m} * * * *`,
      BACKUP_DATABASE_ENABLED: 'false',
      BACKUP_STORAGE_ENABLED: 'false',
      BACKUP_ROTATION_ENABLED: 'false',
      BACKUP_MISFIRE_GRACE: '1h',
    };
    fs.mkdirSync(app.backupDir);
    const s = start(['schedule', ...app.flags], { cwd: app.cwd, env, timeoutMs: 30_000 });
    let out = '';
    s.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    s.child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const t0 = Date.now();
    while (!/scheduler started/.test(out) && Date.now() - t0 < 15_000) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 1500)); // a catch-up would have started by now
    s.child.kill('SIGINT');
    const r = await s.done;
    expect(r.code, out).toBe(130);
    expect(out).not.toMatch(/missed while stopped/);
    const made = fs.readdirSync(app.backupDir).filter((n) => ['full', 'database', 'storage'].includes(n));
    expect(made).toEqual([]);
  });
});
