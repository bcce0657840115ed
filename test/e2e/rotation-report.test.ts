/**
 * Issue 13, item 3: a dry run and the real run report the same figures (what is actually on disk,
 * incomplete backups included), the human output lists kept backups with their rule, and GFS works
 * from `create --rotate` through flags, KEEP_* variables and config keys.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';

interface RotateJson {
  dry_run: boolean;
  kept: { type: string; id: string; reasons: string[]; disk_bytes: number }[];
  removed: { type: string; id: string; reason: string; files: string[]; disk_bytes: number }[];
  freed_bytes: number;
}

const apps: AppFixture[] = [];
afterAll(() => apps.forEach((a) => rmrf(a.cwd)));

function bytesOnDisk(dir: string): number {
  let sum = 0;
  for (const n of fs.readdirSync(dir)) {
    const p = path.join(dir, n);
    const st = fs.lstatSync(p);
    sum += st.isDirectory() ? bytesOnDisk(p) : n === 'backup.log' || n === 'status.json' || n.endsWith('.lock') || n.startsWith('.') ? 0 : st.size;
  }
  return sum;
}

async function appWithFulls(n: number): Promise<AppFixture> {
  const app = makeApp({ randomBytes: 512 * 1024, events: 500 });
  apps.push(app);
  for (let i = 0; i < n; i++) {
    const r = await run(['create', ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
  }
  return app;
}

describe('rotate: the dry run tells the truth', () => {
  it('3 full backups, --max-backups 1: dry run and real run free the same bytes, which is what left the disk', async () => {
    const app = await appWithFulls(3);
    // an incomplete leftover (data without sidecar) holding 100 KiB, older than the good backups
    fs.writeFileSync(path.join(app.backupDir, 'database', 'db_backup_20000101_000000.db'), Buffer.alloc(100 * 1024, 1));
    const dry = await run(['rotate', '--dry-run', '--max-backups', '1', '--json', ...app.flags], { cwd: app.cwd });
    expect(dry.code, describeRun(dry)).toBe(0);
    const d = parseJsonStdout<RotateJson>(dry);
    const incomplete = d.removed.find((x) => x.id === '20000101_000000');
    expect(incomplete?.disk_bytes).toBe(100 * 1024);
    const before = bytesOnDisk(app.backupDir);
    const real = await run(['rotate', '--max-backups', '1', '--json', ...app.flags], { cwd: app.cwd });
    expect(real.code, describeRun(real)).toBe(0);
    const r = parseJsonStdout<RotateJson>(real);
    expect(r.freed_bytes).toBe(before - bytesOnDisk(app.backupDir));
    expect(d.freed_bytes).toBe(r.freed_bytes);
    expect(d.removed.map((x) => [x.type, x.id, x.disk_bytes])).toEqual(r.removed.map((x) => [x.type, x.id, x.disk_bytes]));
  });

  it('the human output lists kept backups with the rule that keeps each', async () => {
    const app = await appWithFulls(2);
    const r = await run(['rotate', '--dry-run', '--max-backups', '1', ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    const keepLines = r.stdout.split('\n').filter((l) => /\bkeep\b/.test(l));
    // newest full and its two components, and the older storage backup: the base of the newer one's chain
    expect(keepLines.length, r.stdout).toBe(4);
    expect(keepLines.find((l) => /\bfull\b/.test(l)), r.stdout).toMatch(/\blast\b/);
    expect(r.stdout).toMatch(/component of full/);
    expect(r.stdout).toMatch(/chain needed by storage/);
    expect(r.stdout).toMatch(/would remove 2 backups, would free/);
  });
});

describe('create --rotate with GFS', () => {
  const ids = (doc: { rotation?: RotateJson }) => doc.rotation!.kept.filter((k) => k.type === 'full').map((k) => k.reasons);
  it('--keep-daily on create: one per day kept, --max-backups not applied', async () => {
    const app = await appWithFulls(2);
    const r = await run(['create', '--rotate', '--keep-daily', '1', '--json', ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    const doc = parseJsonStdout<{ rotation?: RotateJson }>(r);
    expect(ids(doc)).toEqual([['daily']]);
    expect(doc.rotation!.removed.filter((x) => x.type === 'full')).toHaveLength(2);
  });

  it('KEEP_DAILY in the environment and keepDaily in the config file work the same', async () => {
    const app = await appWithFulls(1);
    const viaEnv = await run(['create', '--rotate', '--json', ...app.flags], { cwd: app.cwd, env: { KEEP_DAILY: '1' } });
    expect(ids(parseJsonStdout(viaEnv))).toEqual([['daily']]);
    fs.writeFileSync(path.join(app.cwd, 'cfg.json'), JSON.stringify({ keepDaily: 1 }));
    const viaFile = await run(['create', '--rotate', '--config', 'cfg.json', '--json', ...app.flags], { cwd: app.cwd });
    expect(ids(parseJsonStdout(viaFile))).toEqual([['daily']]);
  });

  it('create --max-backups N without --rotate rotates (it implies --rotate)', async () => {
    const app = await appWithFulls(2);
    const r = await run(['create', '--max-backups', '1', '--json', ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    const doc = parseJsonStdout<{ rotation?: RotateJson }>(r);
    expect(doc.rotation?.removed.filter((x) => x.type === 'full')).toHaveLength(2);
  });
});
