import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config.js';
import { createBackup } from '../../src/ops/create.js';
import { restoreFromRemote } from '../../src/ops/restore.js';
import { syncToRemote } from '../../src/ops/sync.js';
import { openRemoteDefinition } from '../../src/remote/registry.js';
import { type S3Server, startS3, tempDir } from '../helpers/servers.js';

let s3: S3Server;
beforeAll(async () => {
  s3 = await startS3();
});
afterAll(async () => {
  await s3?.stop();
});

/** A real database and media tree, backed up by the real `create`, shipped to S3 and restored from it. */
describe('restore --from a remote', () => {
  it('create → sync → lose the backup directory → restore from the remote', async () => {
    const dir = tempDir('e2e');
    const dbPath = path.join(dir, 'app.db');
    const storage = path.join(dir, 'storage');
    fs.mkdirSync(path.join(storage, 'videos'), { recursive: true });
    const db = new Database(dbPath);
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
    for (let i = 0; i < 500; i++) insert.run(`row ${i}`);
    db.close();
    fs.writeFileSync(path.join(storage, 'videos', 'a.mp4'), Buffer.alloc(300_000, 7));
    fs.writeFileSync(path.join(storage, 'marker.txt'), 'hello');
    const backupDir = path.join(dir, 'backups');
    const cfg = resolveConfig({ backupDir, dbPath, storagePath: storage }, { ...process.env }, dir);
    const created = await createBackup(cfg, { type: 'full' });
    expect(created.ok).toBe(true);

    const remote = await openRemoteDefinition(
      { name: 's3', url: `s3://${s3.bucket}/e2e`, enabled: true, options: { endpoint: s3.endpoint, force_path_style: true, access_key_id: 'S3RVER', secret_access_key: 'S3RVER' } },
      {},
    );
    try {
      const synced = await syncToRemote(remote, backupDir);
      expect(synced.synced.map((s) => s.type)).toEqual(['full']);

      // the server burned down: only the remote copy is left
      fs.rmSync(backupDir, { recursive: true });
      const target = path.join(dir, 'restored');
      const r = await restoreFromRemote({ ...cfg, backupDir: path.join(dir, 'new-backups') }, remote, created.id, { target });
      expect(r.type).toBe('full');
      expect(r.verified).toBe(true);
      const restoredDb = r.database!.to;
      const check = new Database(restoredDb, { readonly: true });
      expect(check.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: 500 });
      check.close();
      const restoredStorage = r.storage!.to;
      expect(fs.readFileSync(path.join(restoredStorage, 'marker.txt'), 'utf8')).toBe('hello');
      expect(fs.statSync(path.join(restoredStorage, 'videos', 'a.mp4')).size).toBe(300_000);
      // the temporary download is gone
      expect(fs.readdirSync(path.join(dir, 'new-backups')).filter((n) => n.startsWith('.remote-restore-'))).toEqual([]);
    } finally {
      await remote.close();
    }
  });
});
