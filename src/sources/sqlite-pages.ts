import * as fsp from 'node:fs/promises';
import Database from 'better-sqlite3';
import { BackupError, usageError } from '../errors.js';
import { ALL_PAGES, beginReadSnapshot, checkSourceDatabase, removeSqliteSidecars, tableRows } from './sqlite.js';

/** What a snapshot of a live database was, read under one read transaction. */
export interface PageSnapshot {
  pageSize: number;
  pageCount: number;
  journalMode: string;
  tables: number;
  tableRows: Record<string, number>;
  /** when the read transaction (the snapshot) was taken */
  at: Date;
  /** 'file': pages read from the database file itself; 'copy': from an online-backup copy (fallback) */
  how: 'file' | 'copy';
}

export type PageVisitor = (pgno: number, page: Buffer) => void | Promise<void>;

/** Pages are read in runs of about this size. */
const READ_CHUNK = 1 << 20;
/** How often the write lock is taken to line the file up with a snapshot before falling back to a copy. */
const ATTEMPTS = 5;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readPages(fh: fsp.FileHandle, pageSize: number, pageCount: number, visit: PageVisitor, signal?: AbortSignal): Promise<void> {
  const per = Math.max(1, Math.floor(READ_CHUNK / pageSize));
  const buf = Buffer.alloc(per * pageSize);
  for (let first = 1; first <= pageCount; first += per) {
    signal?.throwIfAborted();
    const n = Math.min(per, pageCount - first + 1);
    const want = n * pageSize;
    let got = 0;
    while (got < want) {
      const { bytesRead } = await fh.read(buf, got, want - got, (first - 1) * pageSize + got);
      if (bytesRead === 0) throw new BackupError('FAILED', `the database file ended at page ${first + Math.floor(got / pageSize)} of ${pageCount}`);
      got += bytesRead;
    }
    for (let i = 0; i < n; i++) await visit(first + i, buf.subarray(i * pageSize, (i + 1) * pageSize));
  }
}

/**
 * Reads every page of a consistent snapshot of a live database, without copying it first.
 *
 * The read transaction fixes the snapshot; the question is where its pages are. In rollback-journal
 * mode the transaction's SHARED lock keeps every writer out of the file: the file is the snapshot. In
 * WAL mode the newest pages may still be in the -wal. So, for a moment, a second connection takes the
 * write lock (BEGIN IMMEDIATE: no commit can happen), the read transaction starts, and a PASSIVE
 * checkpoint copies the WAL into the file; when it reports every frame of the log checkpointed, the file
 * holds exactly the snapshot. The write lock is then released. While our read transaction lasts, SQLite
 * never checkpoints a frame past our snapshot into the file (our read mark stops it) nor restarts the
 * log, whatever checkpoints the application runs, so the file stays the snapshot until we are done. An
 * application reader older than us can keep the checkpoint from finishing: after a few tries the pages
 * are read from an online-backup copy instead (the level 0 method: slower, as consistent).
 *
 * The file is opened before any SQLite connection and closed after all of them: closing another
 * descriptor of the same file would drop the POSIX locks SQLite holds in this process.
 */
export async function readSnapshotPages(
  dbPath: string,
  visit: PageVisitor,
  options: {
    copyPath: string;
    signal?: AbortSignal;
    waitMs?: number;
    /** called inside the read transaction, before the first page */
    onSnapshot?: (pageSize: number, pageCount: number) => Promise<void>;
  },
): Promise<PageSnapshot> {
  await checkSourceDatabase(dbPath);
  const fh = await fsp.open(dbPath, 'r');
  const connections: Database.Database[] = [];
  const open = (readonly: boolean) => {
    const db = new Database(dbPath, { readonly, fileMustExist: true, timeout: options.waitMs ?? 30_000 });
    connections.push(db);
    return db;
  };
  let copied = false;
  try {
    let reader: Database.Database;
    try {
      reader = open(true);
    } catch (err) {
      throw usageError(`cannot open database ${dbPath}: ${(err as Error).message}`);
    }
    const journalMode = String(reader.pragma('journal_mode', { simple: true })).toLowerCase();
    let tables = -1;
    let how: PageSnapshot['how'] = 'file';
    if (journalMode === 'wal') {
      tables = await lineUpWal(reader, open);
      if (tables < 0) how = 'copy';
    } else {
      tables = await beginReadSnapshot(reader);
    }
    if (how === 'copy') tables = await beginReadSnapshot(reader);
    const at = new Date();
    const pageSize = reader.pragma('page_size', { simple: true }) as number;
    const pageCount = reader.pragma('page_count', { simple: true }) as number;
    const rows = tableRows(reader);
    await options.onSnapshot?.(pageSize, pageCount);
    if (how === 'file') {
      await readPages(fh, pageSize, pageCount, visit, options.signal);
    } else {
      await fsp.rm(options.copyPath, { force: true });
      copied = true;
      await reader.backup(options.copyPath, { progress: () => ALL_PAGES });
      const copy = await fsp.open(options.copyPath, 'r');
      try {
        await readPages(copy, pageSize, pageCount, visit, options.signal);
      } finally {
        await copy.close();
      }
    }
    return { pageSize, pageCount, journalMode, tables, tableRows: rows, at, how };
  } catch (err) {
    if (err instanceof BackupError || (err as Error).name === 'AbortError') throw err;
    throw new BackupError('FAILED', `reading the database pages failed: ${(err as Error).message}`, { cause: err });
  } finally {
    for (const db of connections.reverse()) {
      if (db.inTransaction) db.exec('ROLLBACK');
      db.close();
    }
    await fh.close();
    if (copied) {
      await fsp.rm(options.copyPath, { force: true });
      removeSqliteSidecars(options.copyPath);
    }
  }
}

/**
 * WAL mode: starts `reader`'s read transaction with the database file holding exactly its snapshot
 * (see readSnapshotPages). Returns the table count, or -1 when that could not be had (the caller
 * falls back to a copy; `reader` has no transaction then).
 */
async function lineUpWal(reader: Database.Database, open: (readonly: boolean) => Database.Database): Promise<number> {
  let blocker: Database.Database;
  let checkpointer: Database.Database;
  try {
    blocker = open(false);
    checkpointer = open(false);
  } catch {
    // no write access to the database (or its directory): the checkpoint is not ours to run
    return -1;
  }
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    if (!(await beginImmediate(blocker))) return -1;
    let tables = -1;
    try {
      tables = await beginReadSnapshot(reader);
      const [r] = checkpointer.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
      if (r && r.log === r.checkpointed) return tables;
    } finally {
      blocker.exec('ROLLBACK');
    }
    if (reader.inTransaction) reader.exec('ROLLBACK');
    await sleep(10 * (attempt + 1));
  }
  return -1;
}

/**
 * Takes the write lock. Polled at once and often rather than through SQLite's busy handler, which sleeps
 * ever longer and so loses the lock, for seconds, to an application committing in a tight loop (the
 * same reason as beginReadSnapshot's).
 */
async function beginImmediate(db: Database.Database, waitMs = 30_000): Promise<boolean> {
  const started = Date.now();
  db.pragma('busy_timeout = 0');
  try {
    for (;;) {
      try {
        db.exec('BEGIN IMMEDIATE');
        return true;
      } catch (err) {
        if ((err as { code?: string }).code !== 'SQLITE_BUSY' || Date.now() - started > waitMs) return false;
        const waited = Date.now() - started;
        await new Promise((r) => (waited < 5_000 ? setImmediate(r) : setTimeout(r, 2)));
      }
    }
  } finally {
    db.pragma('busy_timeout = 30000');
  }
}

/** Hashes of every page of a database file at rest (a level 0 copy). */
export async function readFilePages(file: string, pageSize: number, visit: PageVisitor): Promise<number> {
  const fh = await fsp.open(file, 'r');
  try {
    const { size } = await fh.stat();
    const pageCount = Math.floor(size / pageSize);
    await readPages(fh, pageSize, pageCount, visit);
    return pageCount;
  } finally {
    await fh.close();
  }
}
