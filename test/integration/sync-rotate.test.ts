/**
 * sync takes no lock on the backup directory (an upload may outlast the night's create and rotate): a
 * rotation that removes a backup while sync is sending it must not fail the sync.
 */
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config.js';
import { rotateBackups } from '../../src/ops/rotate.js';
import { syncToRemote } from '../../src/ops/sync.js';
import { openRemoteDefinition } from '../../src/remote/registry.js';
import type { Remote } from '../../src/remote/remote.js';
import { listRemoteBackups } from '../../src/offsite/transfer.js';
import { ids, makeBackupSet } from '../helpers/remote-fixtures.js';
import { tempDir } from '../helpers/servers.js';

describe('sync while a rotation runs', () => {
  it('a backup removed by rotate while sync sends it is passed over and reported; the rest is sent, and the run succeeds', async () => {
    const dir = tempDir('sync-rot');
    const backupDir = path.join(dir, 'backups');
    const [older, newer] = ids(2, 5) as [string, string];
    makeBackupSet(backupDir, older);
    makeBackupSet(backupDir, newer);
    const cfg = resolveConfig({ backupDir }, { ...process.env }, dir);
    const inner = await openRemoteDefinition({ name: 'nas', url: pathToFileURL(path.join(dir, 'nas')).href, enabled: true, options: {} });
    let rotated: Awaited<ReturnType<typeof rotateBackups>> | undefined;
    // sync sends the newest first; the first upload of the older backup's data runs the night's rotation first
    const remote = new Proxy(inner, {
      get(target, prop, receiver) {
        // not the registry's remote underneath (remote/retry.ts unwraps to it by a symbol): this one
        if (typeof prop === 'symbol') return undefined;
        if (prop !== 'put') return Reflect.get(target, prop, receiver);
        return async (rel: string, ...rest: [string]) => {
          if (!rotated && rel.includes(older)) rotated = await rotateBackups(cfg, { policy: { keepLast: 1 } });
          return target.put(rel, ...rest);
        };
      },
    }) as Remote;
    try {
      const r = await syncToRemote(remote, backupDir, { retries: 0 });
      expect(rotated?.removed.map((b) => `${b.type}:${b.id}`).sort()).toEqual([`database:${older}`, `full:${older}`, `storage:${older}`]);
      expect(r.synced.map((b) => `${b.type}:${b.id}`)).toEqual([`full:${newer}`]);
      expect(r.notComplete).toEqual([{ type: 'full', id: older, reason: 'removed from the backup directory during the sync' }]);
      const listed = await listRemoteBackups(inner);
      expect(listed.filter((b) => b.status === 'ok').map((b) => `${b.type}:${b.id}`).sort()).toEqual([`database:${newer}`, `full:${newer}`, `storage:${newer}`]);
      // nothing of the removed backup is listed ok on the remote: at most files without a sidecar
      expect(listed.filter((b) => b.id === older && b.status === 'ok')).toEqual([]);
    } finally {
      await inner.close();
    }
  });
});
