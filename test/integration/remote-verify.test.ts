/**
 * verify --remote and the download for a restore hash through the same part checks as a local verify
 * (archive/parts.ts hashParts): an incremental backup's chain is hashed on the remote like its own
 * files, and every file hashed reports progress.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config.js';
import { createBackup } from '../../src/ops/create.js';
import { fetchRemoteBackup } from '../../src/ops/restore-fetch.js';
import { syncToRemote } from '../../src/ops/sync.js';
import { verifyBackups, verifyRemote } from '../../src/ops/verify.js';
import { openRemoteDefinition } from '../../src/remote/registry.js';
import type { TransferEvent } from '../../src/offsite/transfer.js';
import { flipByte, makeStorage } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/servers.js';

const NO_RETRY = { retries: 0 };

/** A level 0 and a level 1 storage backup of a real tree, synced to a file:// remote. */
async function chainOnRemote() {
  const dir = tempDir('rv');
  const storage = path.join(dir, 'storage');
  makeStorage(storage, { randomBytes: 256 * 1024 });
  const backupDir = path.join(dir, 'backups');
  const cfg = resolveConfig({ backupDir, storagePath: storage }, { ...process.env }, dir);
  const level0 = await createBackup(cfg, { type: 'storage' });
  fs.writeFileSync(path.join(storage, 'changed.txt'), 'a change for level 1');
  const level1 = await createBackup(cfg, { type: 'storage' });
  expect([level0.ok, level1.ok]).toEqual([true, true]);
  const sidecar = (id: string) => JSON.parse(fs.readFileSync(path.join(backupDir, 'storage', `storage_backup_${id}.json`), 'utf8'));
  expect(sidecar(level1.id).references).toContain(level0.id);
  const root = path.join(dir, 'nas');
  const remote = await openRemoteDefinition({ name: 'nas', url: pathToFileURL(root).href, enabled: true, options: {} });
  await syncToRemote(remote, backupDir, NO_RETRY);
  return { dir, backupDir, root, remote, level0: level0.id, level1: level1.id, archiveOf: (id: string) => `storage/${sidecar(id).backup_path}` };
}

describe('verify --remote and remote downloads share the local hashing path', () => {
  it('an incremental backup on the remote is as good as its chain there: a flipped byte in the level 0 archive (same size) damages the level 1', async () => {
    const c = await chainOnRemote();
    try {
      expect((await verifyRemote(c.remote, { ref: c.level1, ...NO_RETRY })).ok).toBe(true);
      // same size: the catalog's listing cannot see it, only hashing can
      flipByte(path.join(c.root, c.archiveOf(c.level0)));
      const v = await verifyRemote(c.remote, { ref: c.level1, ...NO_RETRY });
      expect(v.ok).toBe(false);
      expect(v.results.map((r) => r.problems.join('; '))).toEqual([`needs the archive of storage backup ${c.level0}: ${c.archiveOf(c.level0)}: checksum mismatch`]);
      // the chain's files count as checked files of the backup that needs them
      expect(v.results[0]!.checkedFiles).toBe(v.results[0]!.totalFiles);
      expect(v.results[0]!.totalFiles).toBe(3); // its archive, its manifest, the level 0 archive
      // a local verify words the same damage the same way
      flipByte(path.join(c.backupDir, c.archiveOf(c.level0)));
      const local = await verifyBackups(c.backupDir, { ref: c.level1 });
      // (the local verify also reads the level 0 through gunzip, so it may name the data error first)
      expect(local.results[0]!.problems.join('; ')).toContain(`needs the archive of storage backup ${c.level0}: `);
      expect(local.results[0]!.problems.join('; ')).toContain(`storage_backup_${c.level0}`);
      expect(local.results[0]!.problems.join('; ')).toMatch(/checksum mismatch|checksum of the whole artifact/);
    } finally {
      await c.remote.close();
    }
  });

  it('every file hashed on the remote reports progress up to its size, in verify and in the download for a restore', async () => {
    const c = await chainOnRemote();
    try {
      const progressOf = (events: TransferEvent[]) => {
        const last = new Map<string, { bytes: number; size: number }>();
        for (const e of events) if (e.kind === 'progress') last.set(e.rel, { bytes: e.bytes, size: e.size });
        return last;
      };
      const verifyEvents: TransferEvent[] = [];
      await verifyRemote(c.remote, { ref: c.level1, ...NO_RETRY, onEvent: (e) => verifyEvents.push(e) });
      const verified = progressOf(verifyEvents);
      expect(verified.get(c.archiveOf(c.level0))).toEqual({ bytes: expect.any(Number), size: expect.any(Number) });
      for (const [rel, p] of verified) expect(p.bytes, rel).toBe(p.size);
      expect(verifyEvents.filter((e) => e.kind === 'start').map((e) => e.rel).sort()).toEqual([...verified.keys()].sort());

      const fetchEvents: TransferEvent[] = [];
      const fetched = await fetchRemoteBackup(c.remote, c.level1, path.join(c.dir, 'fetch'), { ...NO_RETRY, onEvent: (e) => fetchEvents.push(e) });
      const downloaded = progressOf(fetchEvents);
      expect([...downloaded.keys()].sort()).toEqual(fetchEvents.filter((e) => e.kind === 'download' && !e.rel.endsWith('.json')).map((e) => e.rel).sort());
      expect(downloaded.size).toBe(4); // archive and manifest of each backup of the chain
      for (const [rel, p] of downloaded) expect(p.bytes, rel).toBe(p.size);
      fs.rmSync(fetched.dir, { recursive: true, force: true });
    } finally {
      await c.remote.close();
    }
  });
});
