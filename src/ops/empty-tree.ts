import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { listBackups } from '../catalog/local-store.js';
import type { Config } from '../config.js';
import { BackupError } from '../errors.js';
import { countOf } from '../human.js';

/**
 * An empty storage directory where the last backup of it held files is almost always a disk that did
 * not mount at boot: the mount point is an empty directory on the root filesystem. A backup of it would
 * record "every file deleted", and a week of such nights would let rotation remove the last backups
 * that hold the media. Refused (exit 2) unless asked for with `allowEmpty` (--allow-empty).
 */
export async function refuseUnexpectedlyEmpty(cfg: Config): Promise<void> {
  const dir = await fsp.opendir(cfg.storagePath);
  let empty: boolean;
  try {
    empty = (await dir.read()) === null;
  } finally {
    await dir.close().catch(() => {});
  }
  if (!empty) return;
  const entries = await listBackups(cfg.backupDir, { type: 'storage' }).catch(() => []);
  const held = (s: (typeof entries)[number]['sidecar']) => s?.tree_files ?? s?.file_count ?? 0;
  const previous = entries.find(
    (e) => e.status === 'ok' && path.resolve(e.sidecar?.original_path ?? '') === path.resolve(cfg.storagePath) && held(e.sidecar) > 0,
  );
  if (!previous) return;
  throw new BackupError(
    'USAGE',
    `storage directory ${cfg.storagePath} is empty, but storage backup ${previous.id} of it held ${countOf(held(previous.sidecar), 'file')}: is its disk mounted?`,
    {
      hint: 'mount it and run again; to back up an empty directory on purpose, allow it (allowEmpty)',
      remedy: 'allow-empty',
    },
  );
}
