import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import type { ManifestRecord } from '../archive/manifest.js';
import { manifestRecords } from './file-manifest.js';
import { pinsOf } from '../catalog/chain.js';
import { type BackupEntry, componentLookup, findBackup, listBackups } from '../catalog/local-store.js';
import type { BackupType, Sidecar } from '../catalog/sidecar.js';
import type { Config } from '../config.js';
import type { Identity } from '../crypto/age-keys.js';
import { BackupError, toBackupError, usageError } from '../errors.js';
import { formatBytes, formatDuration } from '../human.js';
import { exists, freeSpace } from '../fsutil.js';
import type { Remote } from '../remote/remote.js';
import { type TransferOptions, listRemoteBackups, sidecarRel } from '../offsite/transfer.js';
import { fsPath } from '../archive/bytenames.js';
import type { ProgressFn } from './progress.js';
import { fetchRemoteBackup } from './restore-fetch.js';
import { restoreLocked } from './restore.js';
import { lockAndHeal } from './restore-journal.js';
import { type Coverage, commitSample, nextRound, planSample, type SampleFile } from './sample.js';
import { artifactFiles } from '../catalog/sidecar.js';
import type { DrillProof } from '../sources/source.js';
import { drillSources } from './sources.js';
import { verifyEntry } from './verify.js';
import { isPageDelta } from '../catalog/page-chain.js';
import { restorableStates, stageState, stateGaps } from './pit.js';

export const DEFAULT_RTO_TARGET_MS = 3_600_000;
export const DEFAULT_RPO_TARGET_MS = 4 * 3_600_000;
const RPO_WINDOW_MS = 7 * 86_400_000;
/** Room left free beside the scratch copy, as a restore leaves it. */
const SPACE_MARGIN = 64 * 1024 * 1024;
/** Live files compared with the backup's manifest by the spot check (an evenly spread sample). */
const SPOT_CHECK_FILES = 200;
/** A scratch directory being written; a kept one loses the suffix. */
const SCRATCH_PREFIX = '.drill-';
const SCRATCH_SUFFIX = '.tmp';

export interface DrillOptions {
  /** drill the newest good backup of this type (default: the newest full one, else the newest of any type) */
  type?: BackupType;
  /** download the backup from this remote instead of reading the local backup directory */
  remote?: Remote;
  /** how the remote is named in the report (its URL may hold credentials) */
  remoteLabel?: string;
  transfer?: TransferOptions;
  identities?: Identity[];
  /** leave the scratch copy in place for inspection */
  keep?: boolean;
  /** read and restore about this percentage, covering everything over repeated drills; RTO extrapolated */
  samplePercent?: number;
  rtoTargetMs?: number;
  rpoTargetMs?: number;
  signal?: AbortSignal;
  onProgress?: ProgressFn;
  lockWaitMs?: number;
  now?: () => Date;
}

export interface TableCheck {
  name: string;
  rows: number | null;
  /** rows recorded in the sidecar at backup time (null: not recorded) */
  expected: number | null;
  ok: boolean;
}

export interface RpoType {
  type: BackupType;
  newest_id: string | null;
  /** whole seconds since the newest good backup (age_seconds, as in every document) */
  age_seconds: number | null;
  /** the longest time without a good backup of this type in the last 7 days (now included) */
  longest_gap_ms: number | null;
  good_backups_7d: number;
}

export interface DrillResult {
  ok: boolean;
  /** passed: restored, proved and within targets; target-missed: proved but too slow or too old; failed: not restorable */
  result: 'passed' | 'target-missed' | 'failed';
  /** why the backup could not be restored or proved (result 'failed') */
  problems: string[];
  /** which target was missed (result 'target-missed') */
  targets_missed: string[];
  notes: string[];
  source: string;
  backup: { type: BackupType; id: string; created_at: string } | null;
  scratch: string;
  kept: boolean;
  timings_ms: { download: number; verify: number; restore: number; checks: number };
  /**
   * measured_ms: download + verify + restore; sampled drills extrapolate the verify and restore parts to
   * the whole backup. null when the drill failed: a backup that did not come back has no recovery time.
   */
  rto: { measured_ms: number | null; target_ms: number; ok: boolean; extrapolated: boolean; sampled_ms?: number };
  sample?: {
    percent: number;
    stored_files_read: number;
    stored_bytes_read: number;
    stored_bytes_total: number;
    coverage: Coverage;
    tree_files_restored: number;
    tree_files_total: number;
    tree_offset: number;
    tree_runs_per_cycle: number;
  };
  rpo: { target_ms: number; ok: boolean; judged_type: BackupType | null; types: RpoType[] };
  bytes: { downloaded: number; verified: number; restored: number };
  database?: { backup_id: string; integrity: string; row_counts_recorded: boolean; tables: TableCheck[] };
  /** backups of sources: each database restored into a scratch database, its tables and rows compared, its RTO */
  databases?: DrillProof[];
  /** a page delta: the state drilled, the deltas applied, and the gaps between states in the 24 h before it (the RPO achieved) */
  point_in_time?: { state_at: string | null; deltas: number; states: number; max_gap_ms: number; p99_gap_ms: number };
  storage?: { backup_id: string; entries: number; bytes: number; manifest_checked: boolean };
  live?: { storage_path: string; sampled: number; changed: number; missing: number; examples: string[] };
  started_at: string;
  duration_ms: number;
}

/**
 * Age of the newest good backup of each type, and the longest gap between good backups in the last 7
 * days. Good is `ok`: a `partial` full backup lacks a half, and `unrestorable` (backups a drill just
 * failed to restore) are not good whatever the listing says.
 */
export function recoveryPoints(entries: BackupEntry[], now: Date, unrestorable: ReadonlySet<string> = new Set()): RpoType[] {
  const out: RpoType[] = [];
  for (const type of ['full', 'database', 'storage'] as const) {
    const good = entries
      .filter((e) => e.type === type && e.status === 'ok' && !unrestorable.has(`${e.type}:${e.id}`) && Number.isFinite(e.createdAt.getTime()))
      .map((e) => ({ id: e.id, t: e.createdAt.getTime() }))
      .sort((a, b) => a.t - b.t);
    if (!good.length) continue;
    const newest = good[good.length - 1];
    const age = Math.max(0, now.getTime() - newest.t);
    const since = now.getTime() - RPO_WINDOW_MS;
    let gap = age;
    let inWindow = 0;
    for (let i = 0; i < good.length; i++) {
      if (good[i].t < since) continue;
      inWindow++;
      if (i > 0) gap = Math.max(gap, good[i].t - Math.max(good[i - 1].t, since));
    }
    out.push({ type, newest_id: newest.id, age_seconds: Math.floor(age / 1000), longest_gap_ms: gap, good_backups_7d: inWindow });
  }
  return out;
}

/** Bytes a restore of `entry` writes (its tree, its database), known from the sidecars. */
async function restoredSize(entry: BackupEntry, lookup: (type: 'database' | 'storage', id: string) => Promise<BackupEntry | undefined>): Promise<number> {
  const of = (s: Sidecar | undefined) => (s ? (s.tree_bytes ?? s.content_bytes ?? s.encryption?.plaintext_size ?? s.file_size ?? 0) : 0);
  if (entry.type !== 'full') return of(entry.sidecar);
  let n = 0;
  for (const t of ['database', 'storage'] as const) {
    const id = entry.sidecar?.[t];
    if (id) n += of((await lookup(t, id))?.sidecar);
  }
  return n;
}

/** Bytes a download of `entry` brings: its files, its components' and the archives its manifest references. */
function downloadSize(entry: BackupEntry, all: BackupEntry[]): number {
  const byKey = new Map(all.map((e) => [`${e.type}:${e.id}`, e]));
  const seen = new Set<string>();
  const add = (type: BackupType, id: string): number => {
    const key = `${type}:${id}`;
    const e = byKey.get(key);
    if (!e || seen.has(key)) return 0;
    seen.add(key);
    let n = e.size;
    if (e.type === 'full') for (const t of ['database', 'storage'] as const) if (e.sidecar?.[t]) n += add(t, e.sidecar[t]!);
    for (const rid of e.sidecar?.references ?? []) n += add('storage', rid);
    return n;
  };
  return add(entry.type, entry.id);
}

/** The restored database against the sidecar: it opens, passes integrity_check, holds every table with its rows. */
function checkRestoredDatabase(file: string, s: Sidecar | undefined): { integrity: string; recorded: boolean; tables: TableCheck[]; problems: string[] } {
  const problems: string[] = [];
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (err) {
    return { integrity: (err as Error).message, recorded: false, tables: [], problems: [`the restored database does not open: ${(err as Error).message}`] };
  }
  try {
    const integrity = (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).join('; ');
    if (integrity !== 'ok') problems.push(`the restored database fails integrity_check: ${integrity.slice(0, 200)}`);
    const names = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
      .pluck()
      .all() as string[];
    const expected = s?.sqlite?.table_rows;
    const tables: TableCheck[] = [];
    const count = (name: string): number | null => {
      try {
        return db
          .prepare(`SELECT count(*) FROM "${name.replace(/"/g, '""')}"`)
          .pluck()
          .get() as number;
      } catch {
        return null;
      }
    };
    if (expected) {
      for (const [name, want] of Object.entries(expected)) {
        const rows = names.includes(name) ? count(name) : null;
        const ok = rows === want;
        tables.push({ name, rows, expected: want, ok });
        if (!names.includes(name)) problems.push(`table ${JSON.stringify(name)} of the source is missing from the restored database`);
        else if (!ok) problems.push(`table ${JSON.stringify(name)} holds ${rows ?? 'uncountable'} rows, ${want} were recorded at backup time`);
      }
      for (const name of names) if (!(name in expected)) tables.push({ name, rows: count(name), expected: null, ok: true });
    } else {
      for (const name of names) tables.push({ name, rows: count(name), expected: null, ok: true });
      const recordedTables = s?.sqlite?.tables;
      // the older count includes SQLite's own tables (sqlite_sequence…)
      const all = (db.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table'").pluck().get() as number) ?? 0;
      if (recordedTables !== undefined && all < recordedTables)
        problems.push(`the restored database holds ${all} tables, ${recordedTables} were recorded at backup time`);
    }
    if (!names.length) problems.push('the restored database holds no tables');
    return { integrity, recorded: !!expected, tables, problems };
  } finally {
    db.close();
  }
}

/**
 * A spread sample of the backup's files compared with the live tree (size and mtime): what changed
 * since. `records` reads the backup's tree: the merge of its chain's manifests, without deletion records.
 */
async function spotCheckLive(records: () => AsyncGenerator<ManifestRecord>, storagePath: string): Promise<NonNullable<DrillResult['live']>> {
  const live = { storage_path: storagePath, sampled: 0, changed: 0, missing: 0, examples: [] as string[] };
  let files = 0;
  for await (const r of records()) if (r.t === 'f') files++;
  const every = Math.max(1, Math.ceil(files / SPOT_CHECK_FILES));
  let i = 0;
  for await (const r of records()) {
    if (r.t !== 'f' || i++ % every !== 0) continue;
    // archive paths start with the storage directory's name
    const rel = r.path.slice(r.path.indexOf('/') + 1);
    live.sampled++;
    const st = await fsp.lstat(fsPath(path.join(storagePath, rel)), { bigint: true }).catch(() => undefined);
    const note = (what: string) => {
      if (live.examples.length < 5) live.examples.push(`${rel}: ${what}`);
    };
    if (!st) {
      live.missing++;
      note('gone from the live tree');
    } else if (!st.isFile() || Number(st.size) !== r.s || String(st.mtimeNs) !== r.mt) {
      live.changed++;
      note('changed since the backup');
    }
  }
  return live;
}

/** Scratch directories of drills that were killed: nobody else drills while we hold the lock. */
async function removeStaleScratch(backupDir: string): Promise<void> {
  for (const name of await fsp.readdir(backupDir).catch(() => [] as string[])) {
    if (name.startsWith(SCRATCH_PREFIX) && name.endsWith(SCRATCH_SUFFIX)) await fsp.rm(path.join(backupDir, name), { recursive: true, force: true });
  }
}

/** Failures that are not the backup's fault: the drill stops with their own exit code. */
const passThrough = (e: BackupError) => e.code === 'NO_SPACE' || e.code === 'LOCKED' || e.code === 'USAGE';

/**
 * A restore drill: the newest good backup (local, or downloaded from a remote) restored into a scratch
 * directory inside the backup directory (never the live paths) through the normal restore, then proved
 * (the database opens, passes integrity_check and holds every table with the rows recorded at backup
 * time; the storage tree matches its manifest, every file hashed), timed (RTO) and dated (RPO).
 */
export async function runDrill(cfg: Config, opts: DrillOptions = {}): Promise<DrillResult> {
  const now = opts.now ?? (() => new Date());
  const startedAt = now();
  const started = Date.now();
  const rtoTarget = opts.rtoTargetMs ?? DEFAULT_RTO_TARGET_MS;
  const rpoTarget = opts.rpoTargetMs ?? DEFAULT_RPO_TARGET_MS;
  const { lock } = await lockAndHeal(cfg.backupDir, 'drill', {
    waitMs: opts.lockWaitMs,
    signal: opts.signal,
    live: { dbPath: cfg.dbPath, storagePath: cfg.storagePath, config: cfg },
  });
  try {
    await removeStaleScratch(cfg.backupDir);
    const source = opts.remote ? (opts.remoteLabel ?? opts.remote.url) : 'local';
    const listed = opts.remote ? await listRemoteBackups(opts.remote, { ...opts.transfer, signal: opts.signal }) : await listBackups(cfg.backupDir);
    // the newest backup, whatever the listing thinks of it: a drill that fell back to an older one
    // would hide exactly what it is there to find
    const candidates = listed.filter((e) => (!opts.type || e.type === opts.type) && e.status !== 'in-progress');
    const chosen = candidates.find((e) => e.type === 'full') ?? candidates[0];
    if (!chosen) {
      const where = opts.remote ? `on ${source}` : `in ${cfg.backupDir}`;
      throw usageError(`no ${opts.type ? `${opts.type} ` : ''}backup ${where} to drill`, 'make one first: vertex-backup create --type full');
    }
    const rpoTypes = recoveryPoints(listed, startedAt);
    const judged = rpoTypes.find((r) => r.type === chosen.type);

    // free space for the copy (and the download) before anything is written
    const lookup = opts.remote
      ? async (type: 'database' | 'storage', id: string) => listed.find((e) => e.type === type && e.id === id)
      : componentLookup(cfg.backupDir);
    const need = (await restoredSize(chosen, lookup)) + (opts.remote ? downloadSize(chosen, listed) : 0);
    const free = await freeSpace(cfg.backupDir);
    if (need + SPACE_MARGIN > free) {
      throw new BackupError(
        'NO_SPACE',
        `not enough free space at ${cfg.backupDir} for the drill's scratch copy: it needs about ${formatBytes(need)} (and ${formatBytes(SPACE_MARGIN)} to spare), ${formatBytes(free)} is free`,
        {
          hint: 'free some space at the backup directory; the drill restores into a scratch directory there',
        },
      );
    }

    const scratch = await fsp.mkdtemp(path.join(cfg.backupDir, `${SCRATCH_PREFIX}${chosen.id}-`)).then(async (d) => {
      await fsp.rename(d, d + SCRATCH_SUFFIX);
      return d + SCRATCH_SUFFIX;
    });
    const result: DrillResult = {
      ok: false,
      result: 'failed',
      problems: [],
      targets_missed: [],
      notes: [],
      source,
      backup: { type: chosen.type, id: chosen.id, created_at: chosen.createdAt.toISOString() },
      scratch,
      kept: false,
      timings_ms: { download: 0, verify: 0, restore: 0, checks: 0 },
      rto: { measured_ms: 0, target_ms: rtoTarget, ok: true, extrapolated: false },
      rpo: { target_ms: rpoTarget, ok: true, judged_type: chosen.type, types: rpoTypes },
      bytes: { downloaded: 0, verified: 0, restored: 0 },
      started_at: startedAt.toISOString(),
      duration_ms: 0,
    };
    try {
      await proveBackup(cfg, chosen, scratch, opts, result);
    } catch (err) {
      const e = toBackupError(err, 'drill');
      if (opts.signal?.aborted || passThrough(e)) {
        await fsp.rm(scratch, { recursive: true, force: true });
        throw e;
      }
      result.problems.push(e.message);
    } finally {
      const t = result.timings_ms;
      result.rto.measured_ms = t.download + t.verify + t.restore;
      if (result.problems.length) result.rto.measured_ms = null;
      else if (result.sample) {
        // linear in bytes: what the share took, scaled to the whole backup
        const full = await restoredSize(chosen, lookup);
        const scale = (ms: number, part: number, whole: number) => (part > 0 ? Math.round((ms * whole) / part) : ms);
        result.rto.sampled_ms = result.rto.measured_ms;
        result.rto.measured_ms =
          t.download + scale(t.verify, result.sample.stored_bytes_read, result.sample.stored_bytes_total) + scale(t.restore, result.bytes.restored, full);
        result.rto.extrapolated = true;
      }
      if (opts.keep && (await exists(scratch))) {
        const kept = scratch.slice(0, -SCRATCH_SUFFIX.length);
        await fsp.rename(scratch, kept);
        result.scratch = kept;
        result.kept = true;
      } else await fsp.rm(scratch, { recursive: true, force: true });
    }

    result.rto.ok = result.rto.measured_ms !== null && result.rto.measured_ms <= rtoTarget;
    if (result.problems.length) {
      // what the drill could not restore is no recovery point: the backup and what it is made of
      const failed = new Set([`${chosen.type}:${chosen.id}`]);
      if (chosen.type === 'full') for (const ty of ['database', 'storage'] as const) if (chosen.sidecar?.[ty]) failed.add(`${ty}:${chosen.sidecar[ty]}`);
      result.rpo.types = recoveryPoints(listed, startedAt, failed);
      result.rpo.ok = false;
    } else if (!result.rto.ok)
      result.targets_missed.push(
        `RTO: download, verify and restore took ${formatDuration(result.rto.measured_ms ?? 0)}, the target is ${formatDuration(rtoTarget)} (RTO_TARGET)`,
      );
    if (judged && !result.problems.length) {
      const ageMs = (judged.age_seconds ?? 0) * 1000;
      const worst = Math.max(ageMs, judged.longest_gap_ms ?? 0);
      result.rpo.ok = worst <= rpoTarget;
      if (!result.rpo.ok) {
        result.targets_missed.push(
          `RPO: ${ageMs >= (judged.longest_gap_ms ?? 0) ? `the newest good ${chosen.type} backup is ${formatDuration(ageMs)} old` : `${formatDuration(judged.longest_gap_ms!)} passed without a good ${chosen.type} backup in the last 7 days`}, the target is ${formatDuration(rpoTarget)} (RPO_TARGET)`,
        );
      }
    }
    result.result = result.problems.length ? 'failed' : result.targets_missed.length ? 'target-missed' : 'passed';
    result.ok = result.result === 'passed';
    result.duration_ms = Date.now() - started;
    return result;
  } finally {
    lock.release();
  }
}

/** Download (remote), verify, restore into the scratch directory, then check what came back. */
async function proveBackup(cfg: Config, chosen: BackupEntry, scratch: string, opts: DrillOptions, result: DrillResult): Promise<void> {
  if (chosen.status !== 'ok' && chosen.status !== 'partial') {
    throw new BackupError('DAMAGED', `the newest ${chosen.type} backup ${chosen.id} is ${chosen.status}: ${chosen.reason ?? 'no usable metadata'}`);
  }
  let sourceDir = cfg.backupDir;
  let entry: BackupEntry | undefined = chosen;
  if (opts.remote) {
    const t = Date.now();
    // the one path restore --from takes: the download verified, an encrypting remote's manifests decrypted
    const fetched = await fetchRemoteBackup(opts.remote, chosen.id, scratch, {
      ...opts.transfer,
      signal: opts.signal,
      type: chosen.type,
      identities: opts.identities?.length ? opts.identities : undefined,
    });
    result.timings_ms.download = Date.now() - t;
    result.bytes.downloaded = fetched.bytes;
    sourceDir = fetched.dir;
    entry = await findBackup(fetched.dir, sidecarRel(fetched.type, fetched.id).split('/').pop()!, fetched.type);
    if (!entry) throw new BackupError('FAILED', `the downloaded backup ${fetched.id} is not where it was written (${fetched.dir})`);
  }
  // no key is a setup problem, not a damaged backup: said before anything is read
  if (!opts.identities?.length) {
    const parts =
      entry.type === 'full'
        ? await Promise.all(
            (['database', 'storage'] as const).map((ty) => (entry!.sidecar?.[ty] ? componentLookup(sourceDir)(ty, entry!.sidecar[ty]!) : undefined)),
          )
        : [entry];
    // an incremental storage backup is read from every archive of its chain: any of them may be the encrypted one
    const lookup = componentLookup(sourceDir);
    for (const p of [...parts])
      for (const rid of pinsOf({ id: p?.id ?? '', references: p?.type === 'storage' ? p.sidecar?.references : undefined }))
        parts.push(await lookup('storage', rid));
    const locked = parts.find((p) => p?.sidecar?.encryption);
    if (locked) {
      throw new BackupError('USAGE', `${locked.type} backup ${locked.id} is encrypted: the drill needs the key to restore it`, {
        hint: 'give the age identity that opens it (AGE_IDENTITY_FILE, or a passphrase in AGE_PASSPHRASE_FILE)',
        remedy: 'identity',
      });
    }
  }
  let t = Date.now();
  let include: string[] | undefined;
  if (opts.samplePercent !== undefined) {
    include = await sampledVerify(cfg, sourceDir, entry, opts.samplePercent, result, opts.identities);
  } else {
    const verified = await verifyEntry(sourceDir, entry, {
      identities: opts.identities,
      signal: opts.signal,
      onProgress: opts.onProgress,
      config: cfg,
      restoring: true,
    });
    result.bytes.verified = verified.checked;
    if (!verified.ok) throw new BackupError('DAMAGED', `${entry.type} backup ${entry.id} failed verification: ${verified.problems.join('; ')}`);
    if (verified.encryption === 'ciphertext')
      throw new BackupError('USAGE', `${entry.type} backup ${entry.id} is encrypted: the drill needs the key to restore it`, {
        hint: 'give the age identity that opens it (or configure the key)',
        remedy: 'identity',
      });
  }
  result.timings_ms.verify = Date.now() - t;

  t = Date.now();
  // a backup of sources (PostgreSQL): each database restored into a scratch database, compared, dropped
  const sourcesEntry =
    entry.type === 'full' ? await componentLookup(sourceDir)('database', entry.sidecar?.database ?? '') : entry.type === 'database' ? entry : undefined;
  if (sourcesEntry?.sidecar?.components) {
    result.databases = await drillSources(cfg, sourcesEntry, opts.identities);
    for (const d of result.databases) if (!d.ok) result.problems.push(...d.problems.map((p) => `database ${d.name}: ${p}`));
  }
  const target = path.join(scratch, 'restore');
  // a page delta is drilled as the state it completes: rebuilt from its chain and checked first (ops/pit.ts)
  let restoreEntry = entry;
  if (entry.type === 'database' && isPageDelta(entry.sidecar)) {
    const all = await listBackups(sourceDir, { type: 'database' });
    const staged = await stageState(sourceDir, all, entry, path.join(scratch, `${entry.id}.state.db`), opts.identities);
    restoreEntry = staged.entry;
    const states = restorableStates(all, entry.sidecar?.original_path);
    const state = states.find((s) => s.id === entry.id);
    result.point_in_time = { state_at: state?.at.toISOString() ?? null, deltas: staged.deltas, ...stateGaps(states, state?.at ?? new Date()) };
  }
  const restored = await restoreLocked(
    cfg,
    { sourceDir, entry: restoreEntry },
    { target, verify: false, include, identities: opts.identities, signal: opts.signal, onProgress: opts.onProgress, sources: { skip: true } },
  );
  result.timings_ms.restore = Date.now() - t;

  t = Date.now();
  const lookup = componentLookup(sourceDir);
  if (restored.database) {
    const dbEntry = restored.database.backupId === entry.id && entry.type === 'database' ? entry : await lookup('database', restored.database.backupId);
    const st = await fsp.stat(restored.database.to);
    result.bytes.restored += st.size;
    const check = checkRestoredDatabase(restored.database.to, dbEntry?.sidecar);
    result.database = { backup_id: restored.database.backupId, integrity: check.integrity, row_counts_recorded: check.recorded, tables: check.tables };
    if (!check.recorded)
      result.notes.push(
        `database backup ${restored.database.backupId}: row counts were not recorded at backup time (an older version made it); only its tables were checked`,
      );
    result.problems.push(...check.problems);
  }
  if (restored.storage) {
    const stEntry = restored.storage.backupId === entry.id && entry.type === 'storage' ? entry : await lookup('storage', restored.storage.backupId);
    const manifest = stEntry?.sidecar?.manifest;
    result.storage = { backup_id: restored.storage.backupId, entries: restored.storage.entries, bytes: restored.storage.bytes, manifest_checked: !!manifest };
    result.bytes.restored += restored.storage.bytes;
    if (manifest && stEntry?.sidecarPath) {
      result.live = await spotCheckLive(() => manifestRecords(sourceDir, stEntry, opts.identities), cfg.storagePath);
    } else {
      result.notes.push(
        `storage backup ${restored.storage.backupId} has no file manifest: its entries were counted, not hashed one by one, and the live tree was not compared`,
      );
    }
  }
  result.timings_ms.checks = Date.now() - t;
}

/** The stored files (data, parts, manifests) a restore of `entry` reads: its own, its components', the archives its manifest references. */
async function filesOf(sourceDir: string, entry: BackupEntry): Promise<SampleFile[]> {
  const lookup = componentLookup(sourceDir);
  const out = new Map<string, SampleFile>();
  const add = async (e: BackupEntry | undefined) => {
    if (!e?.sidecar || !e.sidecarPath) return;
    if (e.type === 'full') {
      for (const t of ['database', 'storage'] as const) if (e.sidecar[t]) await add(await lookup(t, e.sidecar[t]!));
      return;
    }
    const dir = path.relative(sourceDir, path.dirname(e.sidecarPath));
    for (const p of artifactFiles(e.sidecar))
      out.set(path.join(dir, p.file), { rel: path.join(dir, p.file), size: p.size, checksum: p.checksum, type: e.type, id: e.id });
    const m = e.sidecar.manifest;
    if (m) out.set(path.join(dir, m.file), { rel: path.join(dir, m.file), size: m.size, checksum: m.checksum, type: e.type, id: e.id });
    for (const rid of e.sidecar.references ?? []) if (rid !== e.id) await add(await lookup('storage', rid));
  };
  await add(entry);
  return [...out.values()].sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

/**
 * A sampled drill: this run's share of the backup's stored files hashed (coverage kept in the sample
 * state, as `verify --sample` does), and the share of the tree to restore: every k-th file of the
 * manifest (k = ceil(100/PCT)), starting one further each run, so k drills restore every file.
 */
async function sampledVerify(
  cfg: Config,
  sourceDir: string,
  entry: BackupEntry,
  percent: number,
  result: DrillResult,
  identities?: Identity[],
): Promise<string[] | undefined> {
  const { sha256File } = await import('../fsutil.js');
  const files = await filesOf(sourceDir, entry);
  const scope = `drill:${result.source}`;
  const plan = await planSample(cfg.backupDir, scope, files, percent);
  const good: SampleFile[] = [];
  const problems: string[] = [];
  let read = 0;
  for (const f of plan.chosen) {
    const got = await sha256File(path.join(sourceDir, f.rel)).catch(() => undefined);
    if (!got) problems.push(`${f.rel} is missing`);
    else if (got.size !== f.size) problems.push(`${f.rel} is ${got.size} bytes, metadata says ${f.size}`);
    else if (f.checksum && got.checksum !== f.checksum) problems.push(`${f.rel}: checksum mismatch`);
    else good.push(f);
    read += got?.size ?? 0;
  }
  const coverage = await commitSample(cfg.backupDir, plan, good);
  result.bytes.verified = read;
  // the tree's share: a round of its own (the stored files may all fit in one run's share)
  const k = Math.ceil(100 / percent);
  const offset = await nextRound(cfg.backupDir, `drill-tree:${result.source}`, k);
  const storage =
    entry.type === 'storage'
      ? entry
      : entry.type === 'full' && entry.sidecar?.storage
        ? await componentLookup(sourceDir)('storage', entry.sidecar.storage)
        : undefined;
  const manifest = storage?.sidecar?.manifest;
  let include: string[] | undefined;
  let treeFiles = 0;
  if (manifest && storage?.sidecarPath) {
    include = [];
    // the whole tree of the chain (every archive it reads), not the newest night's changes
    for await (const r of manifestRecords(sourceDir, storage, identities)) {
      if (r.t !== 'f') continue;
      if (treeFiles++ % k === offset) include.push(r.path.slice(r.path.indexOf('/') + 1));
    }
    // a tree with fewer files than the share's stride: this run restores none, the next ones do
    if (!include.length) include = undefined;
  }
  result.sample = {
    percent,
    stored_files_read: plan.chosen.length,
    stored_bytes_read: read,
    stored_bytes_total: plan.totalBytes,
    coverage,
    tree_files_restored: include?.length ?? treeFiles,
    tree_files_total: treeFiles,
    tree_offset: offset,
    tree_runs_per_cycle: k,
  };
  if (problems.length) throw new BackupError('DAMAGED', `${entry.type} backup ${entry.id} failed verification: ${problems.join('; ')}`);
  return include;
}

/** What status.json keeps of a drill (check and the metrics file read it). */
export function drillRecord(r: DrillResult): import('../catalog/status.js').DrillRecord {
  const judged = r.rpo.types.find((t) => t.type === r.rpo.judged_type);
  return {
    finished_at: new Date(Date.parse(r.started_at) + r.duration_ms).toISOString(),
    result: r.result,
    source: r.source,
    backup_type: r.backup?.type,
    backup_id: r.backup?.id,
    rto_ms: r.rto.measured_ms ?? undefined,
    rto_target_ms: r.rto.target_ms,
    rto_extrapolated: r.rto.extrapolated || undefined,
    rpo_ms: judged?.age_seconds == null ? undefined : judged.age_seconds * 1000,
    rpo_target_ms: r.rpo.target_ms,
    bytes_restored: r.bytes.restored,
    coverage_pct: r.sample?.coverage.coverage_pct,
    problems: r.problems.length ? r.problems : undefined,
  };
}
