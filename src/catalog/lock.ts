import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type Database from 'better-sqlite3';
import { BackupError } from '../errors.js';
import { ensureDir, writeFileAtomic } from '../fsutil.js';
import { recordInterrupted } from './status.js';
import { stillRunning } from './process-identity.js';
import { openDatabase } from './sqlite-open.js';

/** The holder's JSON: only for the message a refused run prints. It never decides who holds the lock. */
export const LOCK_FILE = '.vertex-backup.lock';
/** The file the kernel lock is taken on. It is never removed: removing a lock file races with its takers. */
export const LOCK_DB = '.vertex-backup.lock.db';

export interface LockHolder {
  pid: number;
  hostname: string;
  started_at: string;
  command: string;
  /** status.json key of the job ('create:full', 'rotate', …) */
  job?: string;
}

export interface Lock {
  holder: LockHolder;
  /** the holder file of a run that died holding the lock (killed, crashed, host rebooted), if one was found */
  previous?: LockHolder;
  release(): void;
}

/** The status.json key of a lock holder's command: 'create --type full' → 'create:full'. */
export function jobOf(command: string): string {
  const m = /^create --type (\w+)/.exec(command);
  return m ? `create:${m[1]}` : command.split(' ')[0];
}

function readHolderSync(file: string): LockHolder | undefined {
  try {
    const h = JSON.parse(fs.readFileSync(file, 'utf8')) as LockHolder;
    return h && typeof h === 'object' && typeof h.pid === 'number' ? h : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Tries the kernel lock once: an exclusive SQLite lock (fcntl byte-range locks underneath) held by an
 * open connection. The kernel drops it when the process dies in any way, so no lock is ever stale.
 * Returns undefined when another process holds it.
 */
function tryKernelLock(file: string): Database.Database | undefined {
  let db: Database.Database | undefined;
  try {
    // created 0600 by us (SQLite would follow the umask). Only when it does not exist yet: closing any
    // descriptor of the file drops every fcntl lock this process holds on it
    try {
      fs.closeSync(fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    db = openDatabase(file, { timeout: 0 });
    // the journal in memory: no -journal file appears beside the lock
    db.pragma('journal_mode = MEMORY');
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
    return db;
  } catch (err) {
    db?.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY') return undefined;
    throw err;
  }
}

/**
 * The holder named in the message of a refused run. The winner writes its holder file just after taking
 * the kernel lock; a loser that looks in between sees no file, or the file of a run that died: it looks
 * again for a moment so the message names the live holder.
 */
async function describeHolder(file: string): Promise<string | undefined> {
  let h: LockHolder | undefined;
  for (let i = 0; i < 20; i++) {
    h = readHolderSync(file);
    // only picks the message: whether the lock is held is the kernel's answer, never this guess
    if (h && (h.hostname !== os.hostname() || stillRunning(h.pid, {}))) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return h ? `pid ${h.pid} on ${h.hostname}, '${h.command}' since ${h.started_at}` : undefined;
}

/**
 * One run per backup directory, held with a kernel lock that dies with its process (see tryKernelLock).
 * A live holder is refused (exit 4) or waited for (`waitMs`). A holder file found by the run that gets
 * the lock was left by a run that died without finishing: it is recorded in status.json for `check`.
 * The lock is as good as the filesystem's fcntl locks: local filesystems, not every NFS setup.
 */
export async function acquireLock(backupDir: string, command: string, options: { waitMs?: number; signal?: AbortSignal } = {}): Promise<Lock> {
  const notWritable = (err: unknown) =>
    new BackupError('USAGE', `backup directory is not writable: ${backupDir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, {
      hint: 'set the backup directory (BACKUP_DIR) to a writable directory',
      remedy: 'backup-dir-writable',
    });
  await ensureDir(backupDir).catch((err) => {
    throw notWritable(err);
  });
  const st = await fsp.stat(backupDir);
  if (!st.isDirectory()) throw notWritable(Object.assign(new Error('not a directory'), { code: 'ENOTDIR' }));
  const dbFile = path.join(backupDir, LOCK_DB);
  const file = path.join(backupDir, LOCK_FILE);
  const holder: LockHolder = { pid: process.pid, hostname: os.hostname(), started_at: new Date().toISOString(), command, job: jobOf(command) };
  const deadline = Date.now() + (options.waitMs ?? 0);
  let db: Database.Database | undefined;
  let retried = false;
  for (;;) {
    try {
      db = tryKernelLock(dbFile);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EROFS' || code === 'EPERM' || code === 'SQLITE_READONLY' || code === 'SQLITE_CANTOPEN') throw notWritable(err);
      throw new BackupError('FAILED', `cannot take the lock ${dbFile}: ${(err as Error).message}`, { hint: 'check that the backup directory is writable' });
    }
    if (db) break;
    if (Date.now() >= deadline || options.signal?.aborted) {
      const who = await describeHolder(file);
      // no holder file: the holder finished while we looked (it removes the file on release), so the lock
      // is likely free now; one more try instead of refusing in the name of "an unknown process"
      if (who === undefined && !retried && !options.signal?.aborted) {
        retried = true;
        continue;
      }
      throw new BackupError('LOCKED', `another vertex-backup run holds the lock on ${backupDir}: ${who ?? 'an unknown process'}`, {
        hint: 'wait for it to finish, or wait for the lock (lockWaitMs)',
        remedy: 'wait',
      });
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  const lockDb = db;
  const previous = readHolderSync(file) ?? (fs.existsSync(file) ? { pid: 0, hostname: '?', started_at: '?', command: 'unknown' } : undefined);
  try {
    await writeFileAtomic(file, JSON.stringify(holder));
  } catch (err) {
    lockDb.close();
    throw notWritable(err);
  }
  if (previous) {
    // a status file that cannot be written never stops the run
    await recordInterrupted(backupDir, { ...previous, job: previous.job ?? jobOf(previous.command) }).catch(() => {});
  }
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.removeListener('exit', release);
    // the holder file first: a run that gets the lock next must not take ours for a dead run's
    try {
      fs.unlinkSync(file);
    } catch {
      /* already gone */
    }
    lockDb.close();
  };
  process.on('exit', release);
  return { holder, previous, release };
}

export async function withLock<T>(backupDir: string, command: string, options: { waitMs?: number; signal?: AbortSignal }, fn: () => Promise<T>): Promise<T> {
  const lock = await acquireLock(backupDir, command, options);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}

/**
 * The holder of the lock when another live process holds it right now, else undefined: its files
 * without metadata are being written, not left by an interrupted run.
 */
export function activeHolder(backupDir: string): LockHolder | undefined {
  if (!isLockHeld(backupDir)) return undefined;
  const h = readHolderSync(path.join(backupDir, LOCK_FILE));
  // this process holding it (rotate after create) has nothing in flight while it lists
  if (h?.pid === process.pid && h.hostname === os.hostname()) return undefined;
  return h ?? { pid: 0, hostname: '?', started_at: new Date(0).toISOString(), command: 'unknown' };
}

/** Whether a process (this one included) holds the lock on the backup directory right now. */
export function isLockHeld(backupDir: string): boolean {
  const dbFile = path.join(backupDir, LOCK_DB);
  if (!fs.existsSync(dbFile)) return false;
  let db: Database.Database | undefined;
  try {
    db = openDatabase(dbFile, { timeout: 0, readonly: true, fileMustExist: true });
    db.pragma('schema_version');
    return false;
  } catch (err) {
    return (err as { code?: string }).code === 'SQLITE_BUSY';
  } finally {
    db?.close();
  }
}
