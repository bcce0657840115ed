import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

/**
 * The backup directories of Docker volumes inside a backup directory (`volumes/<name>/`, one per volume,
 * ops/volumes.ts). Dot-names are the tool's own (`.mirrors` of volumes read through a daemon).
 */
export async function volumeBackupDirs(backupDir: string): Promise<{ name: string; dir: string }[]> {
  const root = path.join(backupDir, 'volumes');
  const entries = await fsp.readdir(root, { withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => ({ name: e.name, dir: path.join(root, e.name) }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
