import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import Database from 'better-sqlite3';
import type { SqliteInfo } from '../catalog/sidecar.js';
import { BackupError, usageError } from '../errors.js';
import { fsyncFile } from '../fsutil.js';

const SQLITE_MAGIC = 'SQLite format 3\0';

/** Checks the path names a readable SQLite database; a clear USAGE error otherwise. */
export async function checkSourceDatabase(file: string, what = 'database'): Promise<fs.Stats> {
  let st: fs.Stats;
  try {
    st = await fsp.stat(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw usageError(
      code === 'ENOENT' ? `${what} file not found: ${file}` : `cannot read ${what} file ${file}: ${code}`,
      'set the database path (DATABASE_PATH or DATABASE_URL) to the application database',
      'db-path',
    );
  }
  if (!st.isFile()) throw usageError(`${what} path is not a file: ${file}`);
  let header: Buffer;
  try {
    const fh = await fsp.open(file, 'r');
    try {
      header = Buffer.alloc(16);
      await fh.read(header, 0, 16, 0);
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw usageError(`cannot read ${what} file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (st.size > 0 && header.toString('latin1') !== SQLITE_MAGIC) throw usageError(`${what} file is not a SQLite database: ${file}`);
  return st;
}

/** Copies every remaining page in one step: a stepwise copy restarts on every commit of a writer. */
export const ALL_PAGES = 0x7fffffff;

/**
 * Opens a read transaction on `db` and returns the number of tables (the query that takes the lock).
 * SQLite's busy handler polls every 100 ms once it has waited a little; a writer committing in a tight
 * loop in rollback-journal mode leaves the lock free only for moments between its commits, so such
 * polling can miss them for many seconds (measured: 3–30 s against a Python writer). We poll at once
 * and often instead, then keep the transaction (and the snapshot) for the whole copy.
 */
export async function beginReadSnapshot(db: Database.Database, waitMs = 60_000): Promise<number> {
  const started = Date.now();
  db.pragma('busy_timeout = 0');
  db.exec('BEGIN');
  try {
    for (;;) {
      try {
        // preparing reads the schema, so it takes the lock too: both inside the retry
        return (db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number }).n;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== 'SQLITE_BUSY' || Date.now() - started > waitMs) throw err;
        const waited = Date.now() - started;
        await new Promise((r) => (waited < 5_000 ? setImmediate(r) : setTimeout(r, 2)));
      }
    }
  } finally {
    db.pragma('busy_timeout = 30000');
  }
}

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

/**
 * Rows of every table (SQLite's own `sqlite_*` tables aside), for a restore drill to compare with. A table
 * that cannot be counted here (a virtual table whose module is missing) is left out, not guessed.
 */
export function tableRows(db: Database.Database): Record<string, number> {
  const rows: Record<string, number> = {};
  const names = db
    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
    .pluck()
    .all() as string[];
  for (const name of names) {
    try {
      rows[name] =
        (db
          .prepare(`SELECT count(*) FROM ${quoteIdent(name)}`)
          .pluck()
          .get() as number) ?? 0;
    } catch {
      // left out: the drill then lists it without a count to compare with
    }
  }
  return rows;
}

function inspectCopy(file: string, sourceJournalMode: string): SqliteInfo {
  const db = new Database(file, { fileMustExist: true });
  try {
    // the copy is a standalone file: no -wal/-shm beside it, and `sqlite3 copy.db` opens it read-only
    db.pragma('journal_mode = DELETE');
    const integrity = (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).join('; ');
    const tables = (db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number }).n;
    return {
      page_size: db.pragma('page_size', { simple: true }) as number,
      page_count: db.pragma('page_count', { simple: true }) as number,
      journal_mode: sourceJournalMode,
      integrity,
      tables,
      table_rows: tableRows(db),
    };
  } finally {
    db.close();
  }
}

/**
 * A consistent copy of a live database through the online backup API, then an integrity check of the
 * copy. Judged by schema too: a copy with fewer tables than the source is not a backup.
 */
export async function backupDatabase(source: string, dest: string, onProgress?: (copiedPages: number, totalPages: number) => void): Promise<SqliteInfo> {
  await checkSourceDatabase(source);
  let src: Database.Database;
  try {
    src = new Database(source, { readonly: true, fileMustExist: true, timeout: 30_000 });
  } catch (err) {
    throw usageError(`cannot open database ${source}: ${(err as Error).message}`);
  }
  let journalMode: string;
  let sourceTables: number;
  // the copy (and the journal SQLite gives it, which takes the file's mode) is private from its first
  // byte, not chmodded after: a run from a shell with umask 022 left it readable by all while it was written
  for (const f of [dest, `${dest}-journal`, `${dest}-wal`, `${dest}-shm`]) await fsp.rm(f, { force: true });
  await createPrivate(dest);
  try {
    // One read transaction for the whole copy: the backup API keeps a read transaction it did not open
    // across its steps, so the copy is one snapshot and never waits for the lock again. Taking and
    // dropping it per step let a writer committing in a tight loop (rollback journal) starve the copy
    // for tens of seconds, close to the busy timeout.
    sourceTables = await beginReadSnapshot(src);
    journalMode = String(src.pragma('journal_mode', { simple: true }));
    await src.backup(dest, {
      progress: ({ totalPages, remainingPages }) => {
        onProgress?.(totalPages - remainingPages, totalPages);
        return ALL_PAGES;
      },
    });
  } catch (err) {
    if (err instanceof BackupError) throw err;
    const e = err as NodeJS.ErrnoException & { code?: string };
    if (e.code === 'SQLITE_FULL' || e.code === 'ENOSPC') throw new BackupError('NO_SPACE', `no space left while copying the database to ${dest}`);
    if (e.code === 'SQLITE_NOTADB' || e.code === 'SQLITE_CORRUPT') throw usageError(`database ${source} is not a valid SQLite database: ${e.message}`);
    throw new BackupError('FAILED', `database backup failed: ${e.message}`, { cause: err });
  } finally {
    if (src.inTransaction) src.exec('ROLLBACK');
    src.close();
  }
  const info = inspectCopy(dest, journalMode);
  if (info.integrity !== 'ok') throw new BackupError('FAILED', `the database copy failed its integrity check: ${info.integrity.slice(0, 200)}`);
  if (info.tables < sourceTables) throw new BackupError('FAILED', `the database copy holds ${info.tables} tables, the source ${sourceTables}`);
  await fsyncFile(dest);
  return info;
}

/** PRAGMA integrity_check and table count of a database backup, read-only (verify must change nothing). */
export function checkDatabaseFile(file: string): { integrity: string; tables: number } {
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    const integrity = (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).join('; ');
    const tables = (db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number }).n;
    return { integrity, tables };
  } catch (err) {
    return { integrity: (err as Error).message, tables: 0 };
  } finally {
    db?.close();
  }
}

/**
 * Restores `backupFile` into the live database at `livePath` through the backup API, so an application
 * holding it open (WAL and SHM included) sees a consistent new database instead of a file swapped
 * under its feet. The live database keeps its journal mode.
 */
export async function restoreDatabaseInto(backupFile: string, livePath: string): Promise<{ integrity: string }> {
  const live = new Database(livePath, { timeout: 30_000 });
  try {
    const mode = String(live.pragma('journal_mode', { simple: true }));
    const src = new Database(backupFile, { readonly: true, fileMustExist: true });
    try {
      const livePageSize = live.pragma('page_size', { simple: true }) as number;
      const backupPageSize = src.pragma('page_size', { simple: true }) as number;
      if (mode.toLowerCase() === 'wal' && livePageSize !== backupPageSize) {
        // SQLite cannot change the page size of a WAL database: leave WAL for the copy (this needs the
        // database to ourselves) and return to it afterwards
        try {
          live.pragma('journal_mode = DELETE');
        } catch (err) {
          throw new BackupError(
            'FAILED',
            `cannot restore: the backup's page size (${backupPageSize}) differs from the live database's (${livePageSize}), and SQLite can change it only while no other process has the database open (${(err as Error).message})`,
            {
              hint: 'stop the application and run the restore again',
            },
          );
        }
      }
      // the destination is a real connection to the live file, so it takes SQLite's locks and writes
      // through the WAL like any other writer
      await src.backup(livePath, { progress: () => ALL_PAGES });
    } finally {
      src.close();
    }
    if (mode.toLowerCase() === 'wal') live.pragma('journal_mode = WAL');
    const integrity = (live.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).join('; ');
    return { integrity };
  } finally {
    live.close();
  }
}

export function removeSqliteSidecars(file: string): void {
  for (const suffix of ['-wal', '-shm', '-journal']) fs.rmSync(file + suffix, { force: true });
}

/** Creates `file` empty with mode 0600 (failing if it exists): the copy is private from its first byte. */
async function createPrivate(file: string): Promise<void> {
  await (await openPrivate(file)).close();
}

function openPrivate(file: string): Promise<fsp.FileHandle> {
  return fsp.open(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
}

/** Copies `from` into the new private file `to`, streaming through the descriptor that created it (not its name again). */
async function rawCopyPrivate(from: string, to: string): Promise<void> {
  const fh = await openPrivate(to);
  await pipeline(fs.createReadStream(from), fh.createWriteStream({ highWaterMark: 1 << 20 }));
}

/**
 * Copies a database aside before it is replaced. Online backup when SQLite can read it; a database too
 * damaged for that is copied byte for byte (with its -wal), because the copy aside must never be the
 * reason a restore cannot happen. The copy is written 0600 under `temp` (SQLite gives its journal the
 * file's mode too) and only a finished, fsynced copy gets the name `dest`, which is never overwritten.
 */
export async function copyDatabaseAside(source: string, dest: string, temp = `${dest}.tmp-${process.pid}`): Promise<'online' | 'raw'> {
  let how: 'online' | 'raw' = 'online';
  const cleanTemp = async () => {
    for (const f of [temp, `${temp}-wal`, `${temp}-journal`, `${temp}-shm`]) await fsp.rm(f, { force: true });
  };
  await cleanTemp();
  try {
    await createPrivate(temp);
    const src = new Database(source, { readonly: true, fileMustExist: true, timeout: 30_000 });
    try {
      await beginReadSnapshot(src);
      await src.backup(temp, { progress: () => ALL_PAGES });
    } finally {
      if (src.inTransaction) src.exec('ROLLBACK');
      src.close();
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'SQLITE_FULL') {
      await cleanTemp();
      throw new BackupError('NO_SPACE', `not enough space to copy the current database aside to ${dest}`, {
        hint: 'free some space and run the restore again',
      });
    }
    how = 'raw';
    await cleanTemp();
    await rawCopyPrivate(source, temp);
    if (fs.existsSync(`${source}-wal`)) await rawCopyPrivate(`${source}-wal`, `${temp}-wal`);
  }
  await fsyncFile(temp);
  // link() fails when the name exists: a copy aside is never overwritten
  if (fs.existsSync(`${temp}-wal`)) {
    await fsyncFile(`${temp}-wal`);
    await fsp.link(`${temp}-wal`, `${dest}-wal`);
  }
  await fsp.link(temp, dest);
  await cleanTemp();
  return how;
}
