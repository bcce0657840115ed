import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { type BackupEntry, findBackup, listBackups } from '../catalog/local-store.js';
import { baseName, compareIds, typeDir } from '../catalog/names.js';
import { isPageDelta } from '../catalog/page-chain.js';
import type { Sidecar } from '../catalog/sidecar.js';
import type { Config } from '../config.js';
import { BackupError, argumentError } from '../errors.js';
import { parseDuration } from '../schedule/duration.js';
import { removeSqliteSidecars } from '../sources/sqlite.js';
import { lockAndHeal } from './restore-journal.js';
import { type FetchedBackup, fetchRemoteBackup } from './restore-fetch.js';
import { type RestoreOptions, type RestoreResult, restoreLocked } from './restore.js';
import type { TransferOptions } from '../offsite/transfer.js';
import { listRemoteBackups } from '../offsite/transfer.js';
import type { Remote } from '../remote/remote.js';
import { stageState } from './pit-state.js';

export { type RebuiltDatabase, rebuildState, stageState } from './pit-state.js';

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

export interface PointInTimeResult extends RestoreResult {
  /** the state restored and when its snapshot was taken */
  state: RestorableState;
  /** the moment asked for */
  at?: string;
  deltas: number;
  /** restore --from: what was downloaded (the state's chain) */
  fetched?: FetchedBackup;
}

/** The state `want` names among `states`; exit 2 naming the oldest when there is none. */
function pickState(states: RestorableState[], want: { at?: Date; id?: string }, where: { dir?: string; remote?: string }): RestorableState {
  const state = want.id ? states.find((s) => s.id === want.id) : stateAt(states, want.at!);
  if (state) return state;
  const first = states[0];
  throw new BackupError(
    'USAGE',
    want.id
      ? `no restorable database state ${want.id} ${where.remote ? `on ${where.remote}` : `in ${where.dir}`}`
      : `no database state at or before ${want.at!.toISOString()}${where.remote ? ` on ${where.remote}` : ''}${first ? `: the oldest is ${first.at.toISOString()} (${first.id})` : ': there is no database backup'}`,
    { argument: true, hint: 'vertex-backup list --type database (or list --remote NAME) shows the restorable window' },
  );
}

/**
 * `restore --at T` (or the id of a delta): the newest state at or before T rebuilt in a staging file
 * beside the backups and checked, then restored like a database backup (the live one copied aside,
 * the state written into it through SQLite's backup API).
 *
 * With `from` (restore --from REMOTE): the state is picked from the remote's listing, its chain
 * downloaded and verified into a temporary directory beside the backups (restore.ts fetchRemoteBackup:
 * an encrypting remote's sidecars unsealed with the identities), and picked again there: a sealed
 * sidecar shows only when its run started, the unsealed one when its snapshot was taken.
 */
export async function restoreDatabaseState(
  cfg: Config,
  want: { at?: Date; id?: string },
  opts: RestoreOptions & { from?: { remote: Remote; transfer?: TransferOptions } } = {},
): Promise<PointInTimeResult> {
  const started = Date.now();
  const { from, ...restoreOpts } = opts;
  const { lock, healed } = await lockAndHeal(
    cfg.backupDir,
    `restore ${want.at ? `--at ${want.at.toISOString()}` : want.id}${from ? ` --from ${from.remote.url}` : ''}`,
    {
      waitMs: opts.lockWaitMs,
      signal: opts.signal,
      live: { dbPath: cfg.dbPath, storagePath: cfg.storagePath, target: opts.target, config: cfg },
    },
  );
  let sourceDir = cfg.backupDir;
  let fetched: FetchedBackup | undefined;
  let staging: string | undefined;
  try {
    if (from) {
      const listed = await listRemoteBackups(from.remote, { ...from.transfer, type: 'database' });
      const candidate = pickState(restorableStates(listed, cfg.dbPath), want, { remote: from.remote.url });
      fetched = await fetchRemoteBackup(from.remote, candidate.id, cfg.backupDir, { ...from.transfer, type: 'database', identities: opts.identities ?? [] });
      sourceDir = fetched.dir;
    }
    const entries = await listBackups(sourceDir, { type: 'database' });
    const state = pickState(restorableStates(entries, cfg.dbPath), want, from ? { remote: from.remote.url } : { dir: cfg.backupDir });
    const entry = entries.find((e) => e.id === state.id)!;
    let restoreEntry = entry;
    let deltas = 0;
    if (isPageDelta(entry.sidecar)) {
      staging = path.join(typeDir(sourceDir, 'database'), `${baseName('database', state.id)}.pit.tmp`);
      const staged = await stageState(sourceDir, entries, entry, staging, opts.identities);
      deltas = staged.deltas;
      restoreEntry = staged.entry;
    }
    const result = await restoreLocked(
      cfg,
      { sourceDir, entry: restoreEntry },
      { ...restoreOpts, verify: restoreEntry === entry ? opts.verify : false, only: 'database' },
      started,
    );
    return { ...result, verified: restoreEntry === entry ? result.verified : true, healed, state, at: want.at?.toISOString(), deltas, fetched };
  } finally {
    if (staging) {
      await fsp.rm(staging, { force: true }).catch(() => {});
      removeSqliteSidecars(staging);
    }
    if (fetched) await fsp.rm(fetched.dir, { recursive: true, force: true }).catch(() => {});
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
