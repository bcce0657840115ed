import * as fs from 'node:fs';
import { openDatabase } from './sqlite-open.js';

/**
 * A short kernel lock between processes (fcntl byte-range locks, through SQLite as in lock.ts) for a
 * critical section that does no await: the section runs synchronously, so no two callers in this process
 * can interleave either, and the kernel drops the lock if the process dies inside it. Waits up to
 * `waitMs` for another process (its sections take milliseconds).
 */
export function withFileLockSync<T>(file: string, fn: () => T, waitMs = 10_000): T {
  // created 0600 by us (SQLite would follow the umask); once, because closing any descriptor of the
  // file drops every fcntl lock this process holds on it
  try {
    fs.closeSync(fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const db = openDatabase(file, { timeout: waitMs });
  try {
    // the journal in memory: no -journal file appears beside the lock
    db.pragma('journal_mode = MEMORY');
    db.exec('BEGIN EXCLUSIVE');
    try {
      return fn();
    } finally {
      db.exec('ROLLBACK');
    }
  } finally {
    db.close();
  }
}
