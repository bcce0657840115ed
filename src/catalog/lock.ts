import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { BackupError } from '../errors.js';
import { ensureDir } from '../fsutil.js';

export const LOCK_FILE = '.vertex-backup.lock';

export interface LockHolder {
  pid: number;
  hostname: string;
  started_at: string;
  command: string;
}

export interface Lock {
  holder: LockHolder;
  release(): void;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readHolder(file: string): Promise<LockHolder | undefined> {
  try {
    const h = JSON.parse(await fsp.readFile(file, 'utf8')) as LockHolder;
    return typeof h.pid === 'number' ? h : undefined;
  } catch {
    return undefined;
  }
}

/** A holder is stale when it names a dead process on this host, or when the file is unreadable garbage. */
function isStale(holder: LockHolder | undefined, mtimeMs: number): boolean {
  if (!holder) return Date.now() - mtimeMs > 10_000; // a writer may be between create and write
  return holder.hostname === os.hostname() && !isAlive(holder.pid);
}

/**
 * One run per backup directory. The lock file is created with O_EXCL and names its holder; a lock left
 * by a dead process (crash, SIGKILL, reboot) is taken over, a live one is refused (exit 4) or waited for.
 */
export async function acquireLock(backupDir: string, command: string, options: { waitMs?: number; signal?: AbortSignal } = {}): Promise<Lock> {
  const notWritable = (err: unknown) =>
    new BackupError('USAGE', `backup directory is not writable: ${backupDir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, {
      hint: 'set --backup-dir or BACKUP_DIR to a writable directory',
    });
  await ensureDir(backupDir).catch((err) => {
    throw notWritable(err);
  });
  const file = path.join(backupDir, LOCK_FILE);
  const holder: LockHolder = { pid: process.pid, hostname: os.hostname(), started_at: new Date().toISOString(), command };
  const deadline = Date.now() + (options.waitMs ?? 0);
  for (;;) {
    try {
      const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
      try {
        fs.writeSync(fd, JSON.stringify(holder));
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        process.removeListener('exit', release);
        try {
          // only remove it if it is still ours
          const cur = JSON.parse(fs.readFileSync(file, 'utf8')) as LockHolder;
          if (cur.pid === holder.pid && cur.started_at === holder.started_at) fs.unlinkSync(file);
        } catch {
          /* already gone */
        }
      };
      process.on('exit', release);
      return { holder, release };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EROFS' || code === 'EPERM') throw notWritable(err);
      if (code !== 'EEXIST') {
        throw new BackupError('FAILED', `cannot create lock file ${file}: ${(err as Error).message}`, {
          hint: 'check that the backup directory is writable',
        });
      }
    }
    const current = await readHolder(file);
    const st = await fsp.stat(file).catch(() => undefined);
    if (!st) continue; // released between our attempts
    if (isStale(current, st.mtimeMs)) {
      // take over: rename first so two takers cannot both delete a fresh lock
      const aside = `${file}.stale-${process.pid}`;
      try {
        await fsp.rename(file, aside);
        const moved = await readHolder(aside);
        await fsp.rm(aside, { force: true });
        if (moved && current && (moved.pid !== current.pid || moved.started_at !== current.started_at)) {
          // we moved a fresh lock another taker had just written: put it back and compete again
          await fsp.link(aside, file).catch(() => {});
        }
      } catch {
        /* someone else took it over first */
      }
      continue;
    }
    if (Date.now() >= deadline || options.signal?.aborted) {
      const who = current ? `pid ${current.pid} on ${current.hostname}, '${current.command}' since ${current.started_at}` : 'an unknown process';
      throw new BackupError('LOCKED', `another vertex-backup run holds the lock on ${backupDir}: ${who}`, {
        hint: 'wait for it to finish, or pass --wait SECONDS',
      });
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

export async function withLock<T>(backupDir: string, command: string, options: { waitMs?: number; signal?: AbortSignal }, fn: () => Promise<T>): Promise<T> {
  const lock = await acquireLock(backupDir, command, options);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
