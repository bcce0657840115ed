import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { type BackupEntry, type StoredFile, judgeBackups, resolveRef } from './judge.js';
import { activeHolder } from './lock.js';
import { TYPE_DIR } from './names.js';
import { BACKUP_TYPES, type BackupType, type Sidecar, parseSidecar } from './sidecar.js';

/**
 * The local backup directory as a store of the catalog: its files with their sizes and its sidecars.
 * How backups are judged is judge.ts's business, the same for the remotes.
 */
export type { BackupEntry, BackupStatus } from './judge.js';

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

/** A file's identity for the sidecar memo: changed content almost always changes one of these. */
type Stamped = StoredFile & { stamp: string };

async function localFiles(backupDir: string): Promise<Stamped[]> {
  const files: Stamped[] = [];
  for (const type of BACKUP_TYPES) {
    const dir = TYPE_DIR[type];
    const names = await readDirSafe(path.join(backupDir, dir));
    const stats = await Promise.all(names.map((name) => fsp.stat(path.join(backupDir, dir, name)).catch(() => undefined)));
    names.forEach((name, i) => {
      const st = stats[i];
      // gone since the readdir (a rotation, a finished temp file): not part of the picture
      if (st) files.push({ dir, name, size: st.size, ref: path.join(backupDir, dir, name), stamp: `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}` });
    });
  }
  return files;
}

/**
 * Sidecar reads kept between listings by a long-running reader (serve's catalog cache): a sidecar is
 * read and parsed again only when its file changed (inode, size, mtime or ctime).
 */
export type SidecarMemo = Map<string, { stamp: string; read: { sidecar?: Sidecar; error?: string } }>;

/**
 * Everything in the backup directory, newest first. Cheap: it reads sidecars and stats files, it never
 * hashes (that is `verify`'s job), so it stays fast with thousands of backups.
 */
export async function listBackups(backupDir: string, options: { type?: BackupType; memo?: SidecarMemo } = {}): Promise<BackupEntry[]> {
  const active = activeHolder(backupDir);
  const files = await localFiles(backupDir);
  const memo = options.memo;
  if (memo) {
    // forget the sidecars that are gone (rotated), so the memo stays the size of the directory
    const present = new Set(files.map((f) => f.ref));
    for (const ref of memo.keys()) if (!present.has(ref)) memo.delete(ref);
  }
  const read = async (f: StoredFile, type: BackupType, id: string) => {
    const stamp = (f as Stamped).stamp;
    const known = memo?.get(f.ref);
    if (known && known.stamp === stamp) return known.read;
    const r = await readSidecar(f.ref, type, id);
    memo?.set(f.ref, { stamp, read: r });
    return r;
  };
  return judgeBackups(
    {
      files,
      readSidecar: read,
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
