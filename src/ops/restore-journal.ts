import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { acquireLock, type Lock } from '../catalog/lock.js';
import { BackupError } from '../errors.js';
import { exists, fsyncDir, writeFileAtomic } from '../fsutil.js';
import { faultPoint } from './fault-point.js';

/**
 * The journal of a restore in progress, kept in the backup directory (every command knows it, whatever
 * the live paths or --target were), so that the next command completes or rolls back a restore that was
 * killed, and says which.
 *
 * Phases: `staging` (the tree is unpacked, the database copied aside: nothing live changed yet),
 * `database` (the live database is being replaced), `storage` / `storage-new` (the database is done and
 * the storage swap has begun). A restore killed before `storage` is rolled back (wholly old); one killed
 * after is completed (wholly new): from then on the staged tree is complete and validated.
 */
export interface RestoreJournal {
  id: string;
  pid: number;
  started_at: string;
  phase: 'staging' | 'database' | 'storage' | 'storage-new';
  database?: {
    live: string;
    /** the copy of the previous live database; absent when there was none */
    savedAs?: string;
    /** where the copy aside is written before it gets its final name */
    asideTemp?: string;
  };
  storage?: StorageSwap;
  /** the plaintext copy of an encrypted database backup: removed by healing whatever the phase */
  decrypted?: string;
}

/**
 * How the staged tree replaces the live one. `rename`: two renames beside the live directory (the old
 * one becomes `previous`). `contents`: the live directory is a mount point, which cannot be renamed, so
 * its entries move one by one into `previous` (a directory inside it) and the staged entries move in.
 */
export interface StorageSwap {
  dest: string;
  mode: 'rename' | 'contents';
  /** the directory the archive was unpacked into (removed at the end) */
  staging: string;
  /** the new tree inside `staging` (or `staging` itself); set once staging is complete */
  newTree?: string;
  /** where the current tree is kept; absent when there was none */
  previous?: string;
}

export const JOURNAL_FILE = '.restore-in-progress.json';
/** downloads of a killed `restore --from`, a journal killed while it was written */
const isLeftover = (name: string) => name.startsWith('.remote-restore-') || name.startsWith(`.tmp-${JOURNAL_FILE}-`);
const journalPath = (backupDir: string) => path.join(backupDir, JOURNAL_FILE);

export async function writeJournal(backupDir: string, j: RestoreJournal): Promise<void> {
  await writeFileAtomic(journalPath(backupDir), JSON.stringify(j));
}

export async function removeJournal(backupDir: string): Promise<void> {
  await fsp.rm(journalPath(backupDir), { force: true });
  await fsyncDir(backupDir);
}

async function readJournal(backupDir: string): Promise<RestoreJournal | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(journalPath(backupDir), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const j = JSON.parse(text) as RestoreJournal;
    return typeof j?.id === 'string' && typeof j.phase === 'string' ? j : undefined;
  } catch {
    return undefined;
  }
}

/** Names inside a mount point that a contents swap leaves where they are. */
export const isRestoreEntry = (name: string) => name.startsWith('.pre-restore-') || name.startsWith('.vertex-restore-');

/**
 * True when `dir` is a mount point: another device than its parent, or a mount listed by the kernel
 * (a bind mount of the same filesystem keeps the device number but still cannot be renamed).
 */
export async function isMountPoint(dir: string): Promise<boolean> {
  const real = await fsp.realpath(dir);
  const parent = path.dirname(real);
  if (parent === real) return true;
  const [a, b] = await Promise.all([fsp.stat(real), fsp.stat(parent)]);
  if (a.dev !== b.dev) return true;
  try {
    const info = await fsp.readFile('/proc/self/mountinfo', 'utf8');
    for (const line of info.split('\n')) {
      const field = line.split(' ')[4];
      if (field && field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))) === real) return true;
    }
  } catch {
    // no /proc: the device check above is all there is
  }
  return false;
}

/** Moves every entry of `from` (but those `keep` names) into `to`; entries already moved are not there any more. */
async function moveEntries(from: string, to: string, keep: (name: string) => boolean, point?: string): Promise<void> {
  let n = 0;
  for (const name of await fsp.readdir(from)) {
    if (keep(name)) continue;
    await fsp.rename(path.join(from, name), path.join(to, name));
    if (point && ++n === 1) faultPoint(point);
  }
}

/** The new tree's root directory takes the place of the mount point's: mode, owner, times. */
async function copyRootMeta(from: string, to: string): Promise<void> {
  const st = await fsp.stat(from);
  if (process.getuid?.() === 0) await fsp.chown(to, st.uid, st.gid).catch(() => {});
  await fsp.chmod(to, st.mode & 0o7777);
  await fsp.utimes(to, st.atime, st.mtime);
}

/**
 * Carries a swap forward from wherever it stands: every step checks what is already done, so the same
 * function finishes a swap that was killed half-way. `onPhase` records the switch from moving the old
 * entries out to moving the new ones in (a contents swap).
 */
export async function completeSwap(
  s: StorageSwap,
  onPhase?: (p: 'storage-new') => Promise<void>,
  startAt: 'storage' | 'storage-new' = 'storage',
): Promise<void> {
  const newTree = s.newTree ?? s.staging;
  if (s.mode === 'rename') {
    if (await exists(newTree)) {
      if (s.previous && (await exists(s.dest)) && !(await exists(s.previous))) {
        await fsp.rename(s.dest, s.previous);
        faultPoint('swap-between-renames');
      }
      await fsp.rename(newTree, s.dest);
    }
    if (newTree !== s.staging) await fsp.rm(s.staging, { recursive: true, force: true });
    await fsyncDir(path.dirname(s.dest));
    return;
  }
  if (startAt === 'storage') {
    if (s.previous) {
      await fsp.mkdir(s.previous, { recursive: true, mode: 0o700 });
      await moveEntries(s.dest, s.previous, isRestoreEntry, 'swap-moving-old');
    }
    await fsyncDir(s.dest);
    await onPhase?.('storage-new');
  }
  if (await exists(newTree)) {
    await moveEntries(newTree, s.dest, () => false, 'swap-moving-new');
    if (newTree !== s.staging) await copyRootMeta(newTree, s.dest);
  }
  await fsp.rm(s.staging, { recursive: true, force: true });
  await fsyncDir(s.dest);
}

/**
 * Undoes a swap that failed in this process (the next step could not be done): the new entries go back
 * into the staging tree, the old ones back where they were. Best effort: the caller reports the state.
 */
export async function undoSwap(s: StorageSwap): Promise<void> {
  const newTree = s.newTree ?? s.staging;
  if (s.mode === 'rename') {
    if (s.previous && !(await exists(s.dest)) && (await exists(s.previous))) await fsp.rename(s.previous, s.dest);
  } else if (s.previous && (await exists(s.previous))) {
    // entries of the live directory that are not in `previous` came from the new tree
    const old = new Set(await fsp.readdir(s.previous));
    if (await exists(newTree)) {
      for (const name of await fsp.readdir(s.dest)) {
        if (isRestoreEntry(name) || old.has(name)) continue;
        await fsp.rename(path.join(s.dest, name), path.join(newTree, name)).catch(() => {});
      }
    }
    await moveEntries(s.previous, s.dest, () => false);
    await fsp.rmdir(s.previous).catch(() => {});
  }
  await fsp.rm(s.staging, { recursive: true, force: true });
}

/**
 * Completes or rolls back a restore that was killed (its journal is in the backup directory) and removes
 * the downloads of a killed `restore --from`. Call it holding the backup-directory lock. Returns what it
 * did, for the command to say, or undefined when there was nothing to heal.
 */
export async function healInterruptedRestore(backupDir: string): Promise<string | undefined> {
  for (const n of await fsp.readdir(backupDir).catch(() => [] as string[])) {
    if (isLeftover(n)) await fsp.rm(path.join(backupDir, n), { recursive: true, force: true });
  }
  const j = await readJournal(backupDir);
  if (!j) {
    await fsp.rm(journalPath(backupDir), { force: true });
    return undefined;
  }
  // a plaintext copy of an encrypted backup never outlives its run
  if (typeof j.decrypted === 'string' && j.decrypted.endsWith('.decrypted.tmp')) await fsp.rm(j.decrypted, { force: true });
  let message: string;
  const db = j.database;
  const st = j.storage;
  if (j.phase === 'staging' || j.phase === 'database') {
    if (db?.asideTemp) await fsp.rm(db.asideTemp, { force: true });
    if (st) await fsp.rm(st.staging, { recursive: true, force: true });
    if (j.phase === 'database' && db) {
      // loaded here: the cheap check every command makes must not load SQLite
      const { removeSqliteSidecars, restoreDatabaseInto } = await import('../sources/sqlite.js');
      if (db.savedAs) await restoreDatabaseInto(db.savedAs, db.live);
      else {
        await fsp.rm(db.live, { force: true });
        removeSqliteSidecars(db.live);
      }
      message = `rolled back the restore of ${j.id} that was interrupted while it replaced the database: ${db.live} ${db.savedAs ? `holds the previous database again (from ${db.savedAs})` : 'was removed (there was none before)'}${st ? `, ${st.dest} was not changed` : ''}`;
    } else {
      message = `removed what an interrupted restore of ${j.id} had staged; nothing live had been changed`;
    }
  } else if (st) {
    await completeSwap(st, undefined, j.phase);
    message = `completed the restore of ${j.id} that was interrupted while it swapped the storage: ${st.dest} holds the backup's tree${st.previous ? ` (the previous one is kept as ${st.previous})` : ''}${db ? `, and ${db.live} holds the backup's database` : ''}`;
  } else {
    message = `cleared the journal of an interrupted restore of ${j.id}`;
  }
  await removeJournal(backupDir);
  return message;
}

/**
 * The backup-directory lock for a command that changes the backup directory or the live paths, after
 * which an interrupted restore is healed. `healed` says what was done, if anything.
 */
export async function lockAndHeal(
  backupDir: string,
  command: string,
  options: { waitMs?: number; signal?: AbortSignal } = {},
): Promise<{ lock: Lock; healed?: string }> {
  const lock = await acquireLock(backupDir, command, options);
  try {
    return { lock, healed: await healInterruptedRestore(backupDir) };
  } catch (err) {
    lock.release();
    throw new BackupError('FAILED', `an interrupted restore could not be completed or rolled back: ${(err as Error).message}`, {
      hint: `see ${journalPath(backupDir)}; fix the cause and run the command again`,
      cause: err,
    });
  }
}

/** Cheap check every command makes first: is there an interrupted restore to heal? */
export function hasInterruptedRestore(backupDir: string): boolean {
  try {
    return fs.readdirSync(backupDir).some((n) => n === JOURNAL_FILE || isLeftover(n));
  } catch {
    return false;
  }
}

/**
 * For commands that do not otherwise lock (or check their inputs before locking): heals an interrupted
 * restore when there is one. A run holding the lock (the restore itself, still going) is left alone.
 */
export async function healIfInterrupted(backupDir: string, command: string): Promise<string | undefined> {
  if (!hasInterruptedRestore(backupDir)) return undefined;
  let held: { lock: Lock; healed?: string };
  try {
    held = await lockAndHeal(backupDir, `${command} (healing an interrupted restore)`);
  } catch (err) {
    if (err instanceof BackupError && (err.code === 'LOCKED' || err.code === 'USAGE')) return undefined;
    throw err;
  }
  held.lock.release();
  return held.healed;
}
