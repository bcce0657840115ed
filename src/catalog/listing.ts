import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { type BackupEntry, type StoredFile, judgeBackups, resolveRef } from './catalog.js';
import { activeHolder } from './lock.js';
import { TYPE_DIR } from './names.js';
import { BACKUP_TYPES, type BackupType, type Sidecar, parseSidecar } from './sidecar.js';

/**
 * The local backup directory as a store of the catalog: its files with their sizes and its sidecars.
 * How backups are judged is catalog.ts's business, the same for the remotes.
 */
export type { BackupEntry, BackupStatus } from './catalog.js';

export async function readSidecar(file: string, type: BackupType, id: string): Promise<{ sidecar?: Sidecar; error?: string }> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    return { error: `cannot read metadata: ${(err as NodeJS.ErrnoException).code}` };
  }
  return parseSidecar(text, type, id);
}

async function readDirSafe(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

async function localFiles(backupDir: string): Promise<StoredFile[]> {
  const files: StoredFile[] = [];
  for (const type of BACKUP_TYPES) {
    const dir = TYPE_DIR[type];
    const names = await readDirSafe(path.join(backupDir, dir));
    const stats = await Promise.all(names.map((name) => fsp.stat(path.join(backupDir, dir, name)).catch(() => undefined)));
    names.forEach((name, i) => {
      const st = stats[i];
      // gone since the readdir (a rotation, a finished temp file): not part of the picture
      if (st) files.push({ dir, name, size: st.size, ref: path.join(backupDir, dir, name) });
    });
  }
  return files;
}

/**
 * Everything in the backup directory, newest first. Cheap: it reads sidecars and stats files, it never
 * hashes (that is `verify`'s job), so it stays fast with thousands of backups.
 */
export async function listBackups(backupDir: string, options: { type?: BackupType } = {}): Promise<BackupEntry[]> {
  const active = activeHolder(backupDir);
  return judgeBackups(
    {
      files: await localFiles(backupDir),
      readSidecar: (f, type, id) => readSidecar(f.ref, type, id),
      // ids are the run's start second: the active run's files have ids from its start on
      active: active
        ? { since: Math.floor(Date.parse(active.started_at) / 1000) * 1000, describe: `the running '${active.command}' (pid ${active.pid})` }
        : undefined,
    },
    options.type,
  );
}

/** Finds backups by type and id, listing the backup directory once (not once per full backup). */
export function componentLookup(backupDir: string): (type: 'database' | 'storage', id: string) => Promise<BackupEntry | undefined> {
  let listing: Promise<Map<string, BackupEntry>> | undefined;
  return async (type, id) => {
    listing ??= listBackups(backupDir).then((l) => new Map(l.map((e) => [`${e.type}:${e.id}`, e])));
    return (await listing).get(`${type}:${id}`);
  };
}

/** Resolves what the user typed: an id, `latest`, or a path to a sidecar or artifact. */
export async function findBackup(backupDir: string, ref: string, type?: BackupType): Promise<BackupEntry | undefined> {
  return resolveRef(await listBackups(backupDir, { type }), ref);
}
