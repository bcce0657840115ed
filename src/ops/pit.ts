import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { readDeltaPage, verifyPageDelta, type PageDeltaEntry } from '../archive/page-delta.js';
import { type BackupEntry, findBackup, listBackups } from '../catalog/local-store.js';
import { baseName, compareIds, typeDir } from '../catalog/names.js';
import { deltaChain, isPageDelta } from '../catalog/page-chain.js';
import type { Sidecar } from '../catalog/sidecar.js';
import type { Config } from '../config.js';
import { BackupError, argumentError, toBackupError } from '../errors.js';
import { createExclusive } from '../fsutil.js';
import { parseDuration } from '../schedule/duration.js';
import { removeSqliteSidecars, tableRows } from '../sources/sqlite.js';
import { faultPoint } from './fault-point.js';
import { lockAndHeal } from './restore-journal.js';
import { type RestoreOptions, type RestoreResult, restoreLocked } from './restore.js';

/** One moment a database can be restored to: a level 0 copy or the state a delta completes. */
export interface RestorableState {
  id: string;
  /** when its snapshot was taken */
  at: Date;
  level: number;
}

/** The restorable states of the database at `dbPath`, oldest first; each with a complete, good chain. */
export function restorableStates(entries: BackupEntry[], dbPath?: string): RestorableState[] {
  const ok = entries.filter((e) => e.type === 'database' && e.status === 'ok' && e.sidecar && !e.sidecar.components);
  const mine = dbPath ? ok.filter((e) => !e.sidecar!.original_path || path.resolve(e.sidecar!.original_path) === path.resolve(dbPath)) : ok;
  return mine
    .map((e) => ({ id: e.id, at: stateTime(e.sidecar!, e.createdAt), level: e.sidecar!.level ?? 0 }))
    .sort((a, b) => a.at.getTime() - b.at.getTime() || compareIds(a.id, b.id));
}

const stateTime = (s: Sidecar, fallback: Date) => new Date(s.snapshot_at ?? s.created_at ?? fallback.getTime());

/**
 * `--at`: a moment, as `2026-12-05 05:59:30` (UTC, like `list` shows times), an ISO 8601 time with its
 * zone, or a duration before now (`-10m`, `-1h30m`).
 */
export function parseMoment(text: string, now = new Date()): Date {
  const t = text.trim();
  if (t.startsWith('-')) return new Date(now.getTime() - parseDuration(t.slice(1), '--at'));
  const bare = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)$/.exec(t);
  const d = new Date(bare ? `${bare[1]}T${bare[2]}Z` : t);
  if (Number.isNaN(d.getTime()))
    throw argumentError(`--at: cannot read "${text}" as a moment`, 'write it like "2026-12-05 05:59:30" (UTC), 2026-12-05T07:59:30+02:00 or -10m');
  return d;
}

/** The newest state at or before `at`. */
export function stateAt(states: RestorableState[], at: Date): RestorableState | undefined {
  let found: RestorableState | undefined;
  for (const s of states) if (s.at.getTime() <= at.getTime()) found = s;
  return found;
}

export interface RebuiltDatabase {
  file: string;
  pageCount: number;
  /** deltas applied on top of the level 0 */
  deltas: number;
}

/** Copies `from` into the new private file `to` and returns the sha256 of what was written. */
async function copyHashing(from: string, to: string): Promise<string> {
  const hash = createHash('sha256');
  const out = await createExclusive(to);
  await pipeline(
    createReadStream(from, { highWaterMark: 1 << 20 }),
    new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        done(null, chunk);
      },
    }),
    out.createWriteStream({ highWaterMark: 1 << 20 }),
  );
  return hash.digest('hex');
}

/**
 * Rebuilds the state `id` into `staging`: its chain's level 0 copied, then for every page the newest
 * version among the chain's deltas written once (the union of their page maps: no replay), the file cut
 * to the state's size. Every delta is checked whole first (its checksum and every page's hash); the
 * result must match the tables and row counts recorded at backup time (integrity_check: see checkState).
 */
export async function rebuildState(dir: string, entries: BackupEntry[], id: string, staging: string): Promise<RebuiltDatabase> {
  const byId = new Map(entries.filter((e) => e.type === 'database' && e.status === 'ok').map((e) => [e.id, e]));
  const chain = deltaChain(id, (cid) => byId.get(cid)?.sidecar as never);
  if (!chain)
    throw new BackupError('DAMAGED', `database backup ${id} cannot be rebuilt: a backup of its chain is missing or damaged`, {
      hint: 'restore to another moment',
    });
  const fileOf = (cid: string) => path.join(dir, path.basename(byId.get(cid)!.sidecar!.backup_path!));
  const base = byId.get(chain[0])!.sidecar!;
  if (base.encryption) throw new BackupError('USAGE', `database backup ${base.id} is encrypted: point-in-time restore reads plain chains only`);
  const target = byId.get(id)!.sidecar!;
  const pageSize = base.sqlite!.page_size;
  await fsp.rm(staging, { force: true });
  removeSqliteSidecars(staging);
  try {
    // the level 0 is checked against its checksum as it is copied (the bytes hashed are the bytes written,
    // so a file swapped on the backup disk between a check and a copy cannot slip in); the deltas by
    // their own checksums. The copy is 0600 from its creation and never written through a planted link.
    const checksum = await copyHashing(fileOf(chain[0]), staging);
    if (checksum !== base.checksum)
      throw new BackupError('DAMAGED', `database backup ${base.id} does not match its checksum`, { hint: 'restore to another moment' });
    faultPoint('pit-base');
    const newest = new Map<number, { file: number; entry: PageDeltaEntry }>();
    let pageCount = base.sqlite!.page_count;
    const files = chain.slice(1).map(fileOf);
    for (const [i, f] of files.entries()) {
      const idx = await verifyPageDelta(f);
      const s = byId.get(chain[i + 1])!.sidecar!;
      if (idx.pageSize !== pageSize) throw new BackupError('DAMAGED', `database backup ${s.id} has pages of ${idx.pageSize} bytes, its chain ${pageSize}`);
      if (idx.size !== s.file_size) throw new BackupError('DAMAGED', `database backup ${s.id} is ${idx.size} bytes, its metadata says ${s.file_size}`);
      pageCount = idx.pageCount;
      for (const e of idx.entries) newest.set(e.pgno, { file: i, entry: e });
    }
    const out = await fsp.open(staging, 'r+');
    const handles = new Map<number, fsp.FileHandle>();
    try {
      for (const pgno of [...newest.keys()].sort((a, b) => a - b)) {
        if (pgno > pageCount) continue;
        const { file, entry } = newest.get(pgno)!;
        let fh = handles.get(file);
        if (!fh) {
          fh = await fsp.open(files[file], 'r');
          handles.set(file, fh);
        }
        const page = await readDeltaPage(fh, files[file], entry, pageSize);
        // a live WAL database's header says WAL: the rebuilt file is a standalone copy like the level 0
        if (pgno === 1) page[18] = page[19] = 1;
        await out.write(page, 0, pageSize, (pgno - 1) * pageSize);
      }
      await out.truncate(pageCount * pageSize);
      await out.sync();
    } finally {
      for (const fh of handles.values()) await fh.close();
      await out.close();
    }
    faultPoint('pit-rebuilt');
    checkState(staging, target);
    return { file: staging, pageCount, deltas: chain.length - 1 };
  } catch (err) {
    await fsp.rm(staging, { force: true });
    removeSqliteSidecars(staging);
    throw toBackupError(err, `rebuilding database state ${id}`);
  }
}

/**
 * The recorded tables and row counts, never optional. PRAGMA integrity_check follows in the restore
 * itself (restoreLocked checks every database it is given before the live one is touched, and once
 * more after writing it): run here too it would cost a third read of the whole database.
 */
function checkState(file: string, target: Sidecar): void {
  const fail = (why: string) =>
    new BackupError('DAMAGED', `the database rebuilt for ${target.id} fails its checks: ${why}`, { hint: 'restore to another moment' });
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw fail(`it does not open: ${(err as Error).message}`);
  }
  try {
    const tables = (db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number }).n;
    const want = target.sqlite;
    if (want && tables !== want.tables) throw fail(`${tables} tables, ${want.tables} recorded`);
    const got = tableRows(db);
    for (const [name, rows] of Object.entries(want?.table_rows ?? {})) {
      if (got[name] !== rows) throw fail(`table ${name} has ${got[name] ?? 'no'} rows, ${rows} recorded`);
    }
  } catch (err) {
    if (err instanceof BackupError) throw err;
    throw fail((err as Error).message);
  } finally {
    db.close();
  }
}

export interface PointInTimeResult extends RestoreResult {
  /** the state restored and when its snapshot was taken */
  state: RestorableState;
  /** the moment asked for */
  at?: string;
  deltas: number;
}

/**
 * `restore --at T` (or the id of a delta): the newest state at or before T rebuilt in a staging file
 * beside the backups and checked, then restored like a database backup (the live one copied aside,
 * the state written into it through SQLite's backup API).
 */
export async function restoreDatabaseState(cfg: Config, want: { at?: Date; id?: string }, opts: RestoreOptions = {}): Promise<PointInTimeResult> {
  const started = Date.now();
  const { lock, healed } = await lockAndHeal(cfg.backupDir, `restore --at ${want.at?.toISOString() ?? want.id}`, {
    waitMs: opts.lockWaitMs,
    signal: opts.signal,
    live: { dbPath: cfg.dbPath, storagePath: cfg.storagePath, target: opts.target },
  });
  const dir = typeDir(cfg.backupDir, 'database');
  let staging: string | undefined;
  try {
    const entries = await listBackups(cfg.backupDir, { type: 'database' });
    const states = restorableStates(entries, cfg.dbPath);
    let state: RestorableState | undefined;
    if (want.id) state = states.find((s) => s.id === want.id);
    else state = stateAt(states, want.at!);
    if (!state) {
      const first = states[0];
      throw new BackupError(
        'USAGE',
        want.id
          ? `no restorable database state ${want.id} in ${cfg.backupDir}`
          : `no database state at or before ${want.at!.toISOString()}${first ? `: the oldest is ${first.at.toISOString()} (${first.id})` : ': there is no database backup'}`,
        { argument: true, hint: 'vertex-backup list --type database shows the restorable window' },
      );
    }
    const entry = entries.find((e) => e.id === state.id)!;
    let restoreEntry = entry;
    let deltas = 0;
    if (isPageDelta(entry.sidecar)) {
      staging = path.join(dir, `${baseName('database', state.id)}.pit.tmp`);
      const staged = await stageState(cfg.backupDir, entries, entry, staging);
      deltas = staged.deltas;
      restoreEntry = staged.entry;
    }
    const result = await restoreLocked(
      cfg,
      { sourceDir: cfg.backupDir, entry: restoreEntry },
      { ...opts, verify: restoreEntry === entry ? opts.verify : false, only: 'database' },
      started,
    );
    return { ...result, verified: restoreEntry === entry ? result.verified : true, healed, state, at: want.at?.toISOString(), deltas };
  } finally {
    if (staging) {
      await fsp.rm(staging, { force: true }).catch(() => {});
      removeSqliteSidecars(staging);
    }
    lock.release();
  }
}

/** The restorable window `list` shows: from the oldest state to the newest. */
export function restorableWindow(states: RestorableState[]): { from: Date; to: Date; states: number; deltas: number } | undefined {
  if (!states.length) return undefined;
  return { from: states[0].at, to: states.at(-1)!.at, states: states.length, deltas: states.filter((s) => s.level > 0).length };
}

/** Whether `restore REF` names a page delta (restored as the state it completes). */
export async function namesPageDelta(backupDir: string, ref: string): Promise<boolean> {
  const e = await findBackup(backupDir, ref).catch(() => undefined);
  return e?.type === 'database' && isPageDelta(e.sidecar);
}

/**
 * A page delta as a database backup whose file is the state it completes: rebuilt into `staging` (and
 * checked) from its chain in `backupDir`. What restore and drill hand to the ordinary restore.
 */
export async function stageState(
  backupDir: string,
  entries: BackupEntry[],
  entry: BackupEntry,
  staging: string,
): Promise<{ entry: BackupEntry; deltas: number }> {
  const rebuilt = await rebuildState(typeDir(backupDir, 'database'), entries, entry.id, staging);
  return {
    entry: {
      ...entry,
      sidecarPath: path.join(path.dirname(staging), `${path.basename(staging)}.json`),
      sidecar: { ...entry.sidecar!, backup_path: path.basename(staging) },
    },
    deltas: rebuilt.deltas,
  };
}

/** The gaps between consecutive states in the `spanMs` before `until`: the recovery point actually achieved. */
export function stateGaps(states: RestorableState[], until: Date, spanMs = 86_400_000): { states: number; max_gap_ms: number; p99_gap_ms: number } {
  const inSpan = states.filter((s) => s.at.getTime() <= until.getTime() && s.at.getTime() > until.getTime() - spanMs);
  const gaps = inSpan
    .slice(1)
    .map((s, i) => s.at.getTime() - inSpan[i].at.getTime())
    .sort((a, b) => a - b);
  const p99 = gaps.length ? gaps[Math.min(gaps.length - 1, Math.ceil(gaps.length * 0.99) - 1)] : 0;
  return { states: inSpan.length, max_gap_ms: gaps.at(-1) ?? 0, p99_gap_ms: p99 };
}
