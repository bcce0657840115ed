/**
 * Issue 14, item 1: one catalog. The local backup directory and a remote holding the same files are
 * judged by the same code, so they give the same verdicts; `latest` is the newest good backup on both,
 * never a damaged one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { findBackup, listBackups } from '../../src/catalog/local-store.js';
import { fetchRemoteBackup } from '../../src/ops/restore-fetch.js';
import { verifyRemote } from '../../src/ops/verify.js';
import { syncToRemote } from '../../src/ops/sync.js';
import { openRemoteDefinition } from '../../src/remote/registry.js';
import { listRemoteBackups } from '../../src/offsite/transfer.js';
import { ids, makeBackupSet } from '../helpers/remote-fixtures.js';
import { tempDir } from '../helpers/servers.js';

const NO_RETRY = { retries: 0 };

async function twoSetsOnARemote() {
  const backupDir = tempDir('cat-local');
  const [older, newer] = ids(2, 9) as [string, string];
  makeBackupSet(backupDir, older);
  makeBackupSet(backupDir, newer);
  const root = path.join(tempDir('cat-remote'), 'store');
  const remote = await openRemoteDefinition({ name: 'nas', url: pathToFileURL(root).href, enabled: true, options: {} });
  await syncToRemote(remote, backupDir, NO_RETRY);
  return { backupDir, root, remote, older, newer };
}

describe('one catalog for the local directory and the remotes', () => {
  it("remote 'latest' never picks a damaged backup: a cut part in the newest full backup makes the older one latest", async () => {
    const { root, remote, older, newer } = await twoSetsOnARemote();
    try {
      // the newest storage backup loses the end of a part: its full backup is damaged
      const part = path.join(root, 'storage', `storage_backup_${newer}.tar.gz.part002`);
      fs.truncateSync(part, 1000);
      const listed = await listRemoteBackups(remote, NO_RETRY);
      expect(listed.find((b) => b.type === 'full' && b.id === newer)?.status).toBe('damaged');
      const v = await verifyRemote(remote, { ref: 'latest', ...NO_RETRY });
      expect(v.results.find((r) => r.type === 'full')?.id).toBe(older);
      expect(v.ok).toBe(true);
      const fetched = await fetchRemoteBackup(remote, 'latest', tempDir('cat-fetch'), NO_RETRY);
      expect([fetched.type, fetched.id]).toEqual(['full', older]);
    } finally {
      await remote.close();
    }
  });

  it('the same files give the same verdicts locally and on a remote', async () => {
    const { backupDir, root, remote, newer, older } = await twoSetsOnARemote();
    try {
      // the same damage on both sides: a missing database file, a storage part of the wrong size, a sidecar that is not JSON
      for (const dir of [backupDir, root]) {
        fs.rmSync(path.join(dir, 'database', `db_backup_${newer}.db`));
        fs.truncateSync(path.join(dir, 'storage', `storage_backup_${older}.tar.gz.part001`), 10);
        fs.writeFileSync(path.join(dir, 'full', `full_backup_${older}.json`), '{ not json');
        fs.writeFileSync(path.join(dir, 'storage', 'storage_backup_20240109_230000.tar.gz.part001'), 'left over');
      }
      const shape = (l: { type: string; id: string; status: string }[]) => l.map((b) => `${b.type}:${b.id}:${b.status}`);
      const local = await listBackups(backupDir);
      const remoteList = await listRemoteBackups(remote, NO_RETRY);
      expect(shape(remoteList)).toEqual(shape(local));
      expect(shape(local)).toEqual([
        'storage:20240109_230000:incomplete',
        `full:${newer}:damaged`,
        `database:${newer}:damaged`,
        `storage:${newer}:ok`,
        `full:${older}:damaged`,
        `database:${older}:ok`,
        `storage:${older}:damaged`,
      ]);
      expect(await findBackup(backupDir, 'latest')).toMatchObject({ type: 'storage', id: newer });
    } finally {
      await remote.close();
    }
  });
});
