/**
 * The offsite commands as an operator runs them, through the built binary and a file:// remote (the
 * per-scheme behaviour against real servers is in test/integration/remote-*.test.ts):
 * create --sync, list/verify/rotate --remote, and restore --from after the local copies are gone.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run } from '../helpers/cli.js';
import { type AppFixture, flipByte, makeApp, rmrf, snapshot, sqlite, tempDir } from '../helpers/fixtures.js';

let app: AppFixture;
let nas: string;
let remotesFile: string;

beforeAll(() => {
  app = makeApp({ journalMode: 'wal', randomBytes: 512 * 1024 });
  nas = tempDir('vb-nas-');
  remotesFile = path.join(app.cwd, 'remote_storage.json');
  fs.writeFileSync(remotesFile, JSON.stringify({ remotes: { nas: { url: pathToFileURL(nas).href } } }), { mode: 0o600 });
});

afterAll(() => {
  rmrf(app?.cwd);
  rmrf(nas);
});

const vb = (args: string[]) => run([...args, ...app.flags, '--remotes-config', remotesFile], { cwd: app.cwd, timeoutMs: 60_000 });

describe('offsite copies through the CLI', () => {
  let firstId = '';

  it('create --sync uploads the new backup, sidecar and all', async () => {
    const r = await vb(['create', '--type', 'full', '--sync', '--json']);
    expect(r.code, describeRun(r)).toBe(0);
    const doc = parseJsonStdout<{ id: string; sync: { remote: string; ok: boolean }[] }>(r);
    firstId = doc.id;
    expect(doc.sync).toEqual([expect.objectContaining({ remote: 'nas', ok: true })]);
    for (const rel of [`full/full_backup_${firstId}.json`, `database/db_backup_${firstId}.db`, `database/db_backup_${firstId}.json`, `storage/storage_backup_${firstId}.json`]) {
      expect(fs.existsSync(path.join(nas, rel)), rel).toBe(true);
    }
  });

  it('list --remote and verify --remote see the copy', async () => {
    const l = await vb(['list', '--remote', 'nas', '--json']);
    expect(l.code, describeRun(l)).toBe(0);
    const rows = parseJsonStdout<{ type: string; id: string; status: string }[] | { backups: { type: string; id: string; status: string }[] }>(l);
    const list = Array.isArray(rows) ? rows : rows.backups;
    expect(list.filter((b) => b.id === firstId).map((b) => b.type).sort()).toEqual(['database', 'full', 'storage']);
    const v = await vb(['verify', '--remote', 'nas', '--all']);
    expect(v.code, describeRun(v)).toBe(0);
  });

  it('restore --from brings the data back after the local backups are lost', async () => {
    const before = snapshot(app.storagePath);
    const rowsBefore = sqlite(app.dbPath, 'SELECT count(*) FROM scan_events');
    fs.rmSync(app.backupDir, { recursive: true, force: true });
    const target = tempDir('vb-restore-from-');
    try {
      const r = await vb(['restore', firstId, '--from', 'nas', '--target', target, '--yes']);
      expect(r.code, describeRun(r)).toBe(0);
      const restoredDb = path.join(target, path.basename(app.dbPath));
      expect(sqlite(restoredDb, 'PRAGMA integrity_check')).toBe('ok');
      expect(sqlite(restoredDb, 'SELECT count(*) FROM scan_events')).toBe(rowsBefore);
      expect(snapshot(path.join(target, path.basename(app.storagePath)))).toEqual(before);
    } finally {
      rmrf(target);
    }
  });

  it('a damaged remote copy is found (exit 3) and restore --from refuses it', async () => {
    const db = path.join(nas, 'database', `db_backup_${firstId}.db`);
    flipByte(db, 4096 + 100);
    const v = await vb(['verify', '--remote', 'nas', firstId]);
    expect(v.code, describeRun(v)).toBe(3);
    expect(v.stdout + v.stderr).toContain(firstId);
    const target = tempDir('vb-restore-from-');
    try {
      const r = await vb(['restore', firstId, '--from', 'nas', '--target', target, '--yes']);
      expect(r.code, describeRun(r)).toBe(3);
      expect(fs.readdirSync(target)).toEqual([]);
    } finally {
      rmrf(target);
    }
  });

  it('rotate --remote applies the policy on the remote', async () => {
    for (let i = 0; i < 2; i++) {
      // a second apart: a new backup must not share the id of the one on the remote
      await new Promise((r) => setTimeout(r, 1100));
      const c = await vb(['create', '--type', 'database', '--sync']);
      expect(c.code, describeRun(c)).toBe(0);
    }
    const dry = await vb(['rotate', '--remote', 'nas', '--max-backups', '1', '--type', 'database', '--dry-run', '--json']);
    expect(dry.code, describeRun(dry)).toBe(0);
    const plan = parseJsonStdout<{ deleted: { id: string }[] }>(dry);
    expect(plan.deleted.map((d) => d.id)).not.toContain(firstId);
    const before = fs.readdirSync(path.join(nas, 'database')).sort();
    const r = await vb(['rotate', '--remote', 'nas', '--max-backups', '1', '--type', 'database']);
    expect(r.code, describeRun(r)).toBe(0);
    const after = fs.readdirSync(path.join(nas, 'database')).filter((n) => n.endsWith('.json'));
    // the newest database backup stays; the one the full backup names is kept as its component
    expect(after.length).toBe(2);
    expect(after).toContain(`db_backup_${firstId}.json`);
    expect(before.length).toBeGreaterThan(fs.readdirSync(path.join(nas, 'database')).length);
  });
});
