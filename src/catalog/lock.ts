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
 * Removes the lock file judged stale, and only that one. Several runs may find the same stale lock at
 * once: without a guard, one of them could delete the fresh lock another had just taken over (two
 * holders). So the removal happens under a takeover guard (O_EXCL), after checking again that the
 * file is still the same inode and still stale. The guard is held for a few system calls; one left by
 * a taker killed inside them names a dead pid and is removed.
 */
function removeStaleLock(file: string, ino: number): void {
  const guard = `${file}.takeover`;
  try {
    const fd = fs.openSync(guard, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    try {
      fs.writeSync(fd, String(process.pid));
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    try {
      const pid = Number(fs.readFileSync(guard, 'utf8'));
      const age = Date.now() - fs.statSync(guard).mtimeMs;
      if ((pid > 0 && !isAlive(pid)) || (!(pid > 0) && age > 10_000)) fs.rmSync(guard, { force: true });
    } catch {
      /* the guard went away meanwhile */
    }
    return;
  }
  try {
    const st = fs.statSync(file);
    if (st.ino !== ino) return; // another run took it over meanwhile: judge the new holder afresh
    let holder: LockHolder | undefined;
    try {
      const h = JSON.parse(fs.readFileSync(file, 'utf8')) as LockHolder;
      holder = typeof h.pid === 'number' ? h : undefined;
    } catch {
      holder = undefined;
    }
    if (isStale(holder, st.mtimeMs)) fs.unlinkSync(file);
  } catch {
    /* gone already */
  } finally {
    fs.rmSync(guard, { force: true });
  }
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
      removeStaleLock(file, st.ino);
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
