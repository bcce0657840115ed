import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { type BackupEntry, findBackup, listBackups } from '../catalog/local-store.js';
import { compareIds } from '../catalog/names.js';
import { isPageDelta } from '../catalog/page-chain.js';
import type { BackupType } from '../catalog/sidecar.js';
import type { Config } from '../config.js';
import { needIdentity } from '../crypto/age-artifact.js';
import type { Identity } from '../crypto/age-keys.js';
import { BackupError } from '../errors.js';
import type { Remote } from '../remote/remote.js';
import { type TransferOptions, sidecarRel } from '../offsite/transfer.js';
import { applyDatabase, type AppliedDatabase, swapStorage, withState } from './restore-apply.js';
import { type FetchedBackup, fetchRemoteBackup } from './restore-fetch.js';
import { lockAndHeal, type RestoreJournal, removeJournal, writeJournal } from './restore-journal.js';
import { type RestoreSource, resolveRestoreSource } from './restore-source.js';
import { keptAsFor, type StagedDatabase, type StagedStorage, saveCurrentDatabase, stageDatabase, stageStorage } from './restore-stage.js';
import { faultPoint } from './fault-point.js';
import { refuseForeignLink } from './live-links.js';
import type { ProgressFn } from './progress.js';
import { verifyEntry } from './verify.js';
import { restoreSources, type SourcesRestoreOptions } from './sources.js';
import type { RestoreOutcome } from '../sources/source.js';

// the restore in phases: fetch (restore-fetch.ts, `--from` only), verify, stage (restore-stage.ts), apply
// the database and swap the storage (restore-apply.ts); a run killed in between is healed by the next
// command (restore-journal.ts)

// callers from before the split (and other branches) import the fetch from here
export type { FetchedBackup } from './restore-fetch.js';
export { fetchRemoteBackup } from './restore-fetch.js';

export interface RestoreOptions {
  /** restore into this directory instead of the live paths */
  target?: string;
  /** verify the backup first (default true) */
  verify?: boolean;
  signal?: AbortSignal;
  onProgress?: ProgressFn;
  lockWaitMs?: number;
  /** incremental storage backups: restore only these paths of the tree (relative to the storage directory) */
  include?: string[];
  /** one half of a full backup only (`--include` implies storage: a path-only restore never touches the database) */
  only?: 'database' | 'storage';
  /** called after verification, before anything is changed; return false to cancel */
  confirm?: (plan: RestorePlan) => Promise<boolean>;
  /** runs once the restore is confirmed, before anything changes (the beforeRestore hooks); a throw stops it */
  beforeChange?: (plan: RestorePlan) => Promise<void>;
  /** age identities for encrypted backups */
  identities?: Identity[];
  /** backups of sources (PostgreSQL): --target-db, --database, --globals */
  sources?: Omit<SourcesRestoreOptions, 'identities'>;
}

export interface RestorePlan {
  type: BackupType;
  id: string;
  database?: { backupId: string; to: string };
  /** keptAs: where the current tree will be kept (inside a mount point, beside a plain directory) */
  storage?: { backupId: string; to: string; keptAs?: string };
  verified: boolean;
}

export interface RestoreResult extends RestorePlan {
  cancelled?: boolean;
  database?: RestorePlan['database'] & { savedCurrentAs?: string; integrity: string };
  storage?: RestorePlan['storage'] & { previousKeptAs?: string; entries: number; bytes: number; warnings: string[] };
  /** backups of sources: each database restored (and where the previous one is kept) */
  sources?: RestoreOutcome[];
  /** what was done to complete or roll back an earlier restore that had been interrupted */
  healed?: string;
  /** things the operator should know: no checksum was available, … */
  warnings?: string[];
  durationMs: number;
}

async function component(backupDir: string, type: 'database' | 'storage', id: string | null | undefined): Promise<BackupEntry | undefined> {
  if (!id) return undefined;
  const e = (await listBackups(backupDir, { type })).find((x) => x.id === id);
  if (!e) throw new BackupError('DAMAGED', `${type} component ${id} of the full backup is missing`);
  return e;
}

/** Checks `--target`: a directory or nothing yet, never a file. */
async function checkTarget(target: string): Promise<string> {
  const dir = path.resolve(target);
  const st = await fsp.stat(dir).catch(() => undefined);
  if (st && !st.isDirectory())
    throw new BackupError('USAGE', `--target must name a directory, and ${dir} is a file`, { hint: 'give a new or existing directory to restore into' });
  return dir;
}

/** `latest` is the newest good backup: the newer ones it passed over (damaged, incomplete), said out loud. */
async function skippedForLatest(backupDir: string, chosen: BackupEntry): Promise<string[]> {
  const newer = (await listBackups(backupDir)).filter(
    (e) => compareIds(e.id, chosen.id) > 0 && e.status !== 'ok' && e.status !== 'in-progress' && (chosen.type !== 'full' || e.type === 'full'),
  );
  return newer.map(
    (e) =>
      `latest: passed over the newer ${e.type} backup ${e.id}, which is ${e.status}${e.reason ? ` (${e.reason})` : ''}; restoring ${chosen.type} backup ${chosen.id}`,
  );
}

/** Restores under the lock (so rotation cannot remove the backup being read). */
export async function restoreBackup(cfg: Config, ref: string, opts: RestoreOptions = {}): Promise<RestoreResult> {
  const started = Date.now();
  if (opts.target) await checkTarget(opts.target);
  const source = await resolveRestoreSource(cfg.backupDir, ref);
  const { lock, healed } = await lockAndHeal(cfg.backupDir, `restore ${source.entry.id}`, {
    waitMs: opts.lockWaitMs,
    signal: opts.signal,
    live: { dbPath: cfg.dbPath, storagePath: cfg.storagePath, target: opts.target, config: cfg },
  });
  try {
    const skipped = ref === 'latest' ? await skippedForLatest(cfg.backupDir, source.entry) : [];
    const result = await restoreLocked(cfg, source, opts, started);
    const warnings = [...skipped, ...(result.warnings ?? [])];
    return { ...result, warnings: warnings.length ? warnings : undefined, healed };
  } finally {
    lock.release();
  }
}

/** Verifies the backup unless told not to (or it has no checksum to check); returns whether it did. */
async function verifyPhase(cfg: Config, source: RestoreSource, opts: RestoreOptions, warnings: string[]): Promise<boolean> {
  const { entry, sourceDir } = source;
  const verify = opts.verify !== false && !source.unverifiable;
  if (source.unverifiable) {
    warnings.push(
      `no checksum was available for ${entry.files[0]} (no metadata beside it): it was checked by reading it${entry.type === 'database' ? ' (integrity_check)' : ' (a full unpack)'} only` +
        (entry.type === 'storage' ? '; if it is the archive of an incremental (level > 0) backup, it held only what changed since the backup before it' : ''),
    );
  }
  if (verify) {
    const v = await verifyEntry(sourceDir, entry, {
      signal: opts.signal,
      onProgress: opts.onProgress,
      identities: opts.identities,
      config: cfg,
      restoring: true,
      deferPlainSources: true,
    });
    if (!v.ok) {
      throw new BackupError('DAMAGED', `${entry.type} backup ${entry.id} failed verification: ${v.problems.join('; ')}`, {
        hint: 'restore another backup, or restore it without verifying it first',
        remedy: 'no-verify',
      });
    }
  } else if (!entry.sidecar) {
    throw new BackupError('DAMAGED', `${entry.type} backup ${entry.id} is ${entry.status}: ${entry.reason ?? 'no metadata'}`);
  }
  return verify;
}

/** The database and storage backups a restore reads: the backup itself, or the halves of a full one. */
async function componentsOf(source: RestoreSource, opts: RestoreOptions): Promise<{ dbEntry?: BackupEntry; stEntry?: BackupEntry }> {
  const { entry, sourceDir } = source;
  const only = opts.only ?? (opts.include?.length ? 'storage' : undefined);
  if (only && entry.type !== 'full' && entry.type !== only)
    throw new BackupError('USAGE', `${entry.type} backup ${entry.id} holds no ${only}`, {
      argument: true,
      hint: `restoring only the ${only} picks one half of a full backup`,
      remedy: { kind: 'only', subject: only },
    });
  const half = async (type: 'database' | 'storage') =>
    only && only !== type
      ? undefined
      : entry.type === type
        ? entry
        : entry.type === 'full'
          ? await component(sourceDir, type, entry.sidecar?.[type])
          : undefined;
  return { dbEntry: await half('database'), stEntry: await half('storage') };
}

/** Every key an encrypted half needs is there before anything is asked or changed. */
function requireKeys(entries: (BackupEntry | undefined)[], sourcesEntry: BackupEntry | undefined, identities: Identity[] | undefined): void {
  if (identities?.length) return;
  const needsKey = sourcesEntry?.sidecar?.components?.find((c) => c.encryption);
  if (needsKey?.encryption) throw needIdentity({ subject: `database backup ${sourcesEntry!.id}`, info: needsKey.encryption });
  for (const e of entries) {
    if (e?.sidecar?.encryption) throw needIdentity({ subject: `${e.type} backup ${e.id}`, info: e.sidecar.encryption });
  }
}

/**
 * The restore itself, the backup-directory lock held by the caller. Order: verify; stage everything that
 * can fail (the storage tree unpacked and checked, the database backup checked, the current database
 * copied aside) while nothing live changes; then the database, then the storage swap. The journal in the
 * backup directory lets the next command complete or roll back a run killed in between.
 */
export async function restoreLocked(cfg: Config, source: RestoreSource, opts: RestoreOptions = {}, started = Date.now()): Promise<RestoreResult> {
  const { entry } = source;
  const warnings: string[] = [];
  const verify = await verifyPhase(cfg, source, opts, warnings);
  let { dbEntry, stEntry } = await componentsOf(source, opts);
  // a backup of sources (PostgreSQL) restores through its kinds, each database beside the live one first
  const sourcesEntry = dbEntry?.sidecar?.components ? dbEntry : undefined;
  const target = opts.target ? await checkTarget(opts.target) : undefined;
  const dbTo = target ? path.join(target, path.basename(cfg.dbPath)) : cfg.dbPath;
  const stTo = target ? path.join(target, path.basename(cfg.storagePath)) : cfg.storagePath;
  if (dbEntry) await refuseForeignLink(dbTo, 'database');
  if (stEntry) await refuseForeignLink(stTo, 'storage');
  const id = entry.type === 'full' || !source.unverifiable ? entry.id : path.basename(entry.id).replace(/[^\w.-]+/g, '_');
  const plan: RestorePlan = {
    type: entry.type,
    id: entry.id,
    database: dbEntry && { backupId: dbEntry.id, to: sourcesEntry ? (opts.sources?.targetDb ?? cfg.postgres?.display ?? 'PostgreSQL') : dbTo },
    storage: stEntry && { backupId: stEntry.id, to: stTo, keptAs: await keptAsFor(stTo, id) },
    verified: verify,
  };
  requireKeys([dbEntry, stEntry], sourcesEntry, opts.identities);
  if (opts.confirm && !(await opts.confirm(plan)))
    return { ...plan, database: undefined, storage: undefined, cancelled: true, durationMs: Date.now() - started };
  opts.signal?.throwIfAborted();
  await opts.beforeChange?.(plan);
  let sources: RestoreOutcome[] | undefined;
  if (sourcesEntry) {
    if (!opts.sources?.skip) sources = await restoreSources(cfg, sourcesEntry, { ...opts.sources, identities: opts.identities, checksums: verify });
    dbEntry = undefined;
    if (!stEntry) return { ...plan, database: undefined, storage: undefined, sources, durationMs: Date.now() - started };
  }

  const stateDir = cfg.backupDir;
  const journal: RestoreJournal = { id, pid: process.pid, started_at: new Date().toISOString(), phase: 'staging' };
  await writeJournal(stateDir, journal);
  const staged = await stagePhase(dbEntry && { entry: dbEntry, to: dbTo }, stEntry && { entry: stEntry, to: stTo }, id, verify, opts, journal, stateDir);
  try {
    let database: AppliedDatabase | undefined;
    if (dbEntry && staged.db) database = await applyDatabase(dbEntry.id, staged.db, dbTo, staged.savedCurrentAs, staged.storage, journal, stateDir);
    let storage: RestoreResult['storage'];
    if (stEntry && staged.storage) {
      const st = staged.storage;
      await swapStorage(st, stTo, database, journal, stateDir);
      storage = { backupId: stEntry.id, to: st.swap.dest, previousKeptAs: st.swap.previous, entries: st.entries, bytes: st.bytes, warnings: st.warnings };
    }
    await removeJournal(stateDir);
    return { ...plan, database, sources, storage, warnings: warnings.length ? warnings : undefined, durationMs: Date.now() - started };
  } finally {
    if (journal.decrypted) await fsp.rm(journal.decrypted, { force: true });
  }
}

interface Staged {
  db?: StagedDatabase;
  storage?: StagedStorage;
  savedCurrentAs?: string;
}

/** Everything that can fail, while nothing live changes; on a failure, whatever was staged is removed. */
async function stagePhase(
  db: { entry: BackupEntry; to: string } | undefined,
  st: { entry: BackupEntry; to: string } | undefined,
  id: string,
  verified: boolean,
  opts: RestoreOptions,
  journal: RestoreJournal,
  stateDir: string,
): Promise<Staged> {
  const staged: Staged = {};
  try {
    if (db) staged.db = await stageDatabase(db.entry, db.to, verified, opts.identities, journal, stateDir);
    if (st) staged.storage = await stageStorage(st.entry, st.to, id, opts, journal, stateDir);
    opts.signal?.throwIfAborted();
    if (db && staged.db?.existed) staged.savedCurrentAs = await saveCurrentDatabase(db.to, id, journal, stateDir);
    faultPoint('staged');
    opts.signal?.throwIfAborted();
    return staged;
  } catch (err) {
    if (journal.storage) await fsp.rm(journal.storage.staging, { recursive: true, force: true });
    if (journal.decrypted) await fsp.rm(journal.decrypted, { force: true });
    await removeJournal(stateDir);
    throw withState(err, 'nothing was changed', 'restore');
  }
}

/**
 * `restore --from REMOTE ID`: under the backup-directory lock (like every command that changes the live
 * paths), download and verify into a temporary directory, then the normal safe restore from there (it
 * verifies again and copies the live data aside). The download is removed afterwards whatever happens.
 */
export async function restoreFromRemote(
  cfg: Config,
  remote: Remote,
  ref: string,
  opts: RestoreOptions & { transfer?: TransferOptions } = {},
): Promise<RestoreResult & { fetched: FetchedBackup }> {
  const started = Date.now();
  if (opts.target) {
    const st = await fsp.stat(path.resolve(opts.target)).catch(() => undefined);
    if (st && !st.isDirectory())
      throw new BackupError('USAGE', `--target must name a directory, and ${path.resolve(opts.target)} is a file`, {
        hint: 'give a new or existing directory to restore into',
      });
  }
  const { lock, healed } = await lockAndHeal(cfg.backupDir, `restore ${ref} --from ${remote.url}`, {
    waitMs: opts.lockWaitMs,
    signal: opts.signal,
    live: { dbPath: cfg.dbPath, storagePath: cfg.storagePath, target: opts.target, config: cfg },
  });
  try {
    const fetched = await fetchRemoteBackup(remote, ref, cfg.backupDir, { signal: opts.signal, ...opts.transfer, identities: opts.identities ?? [] });
    try {
      const entry = await findBackup(fetched.dir, sidecarRel(fetched.type, fetched.id).split('/').pop()!, fetched.type);
      if (!entry) throw new BackupError('FAILED', `the downloaded backup ${fetched.id} is not where it was written (${fetched.dir})`);
      if (isPageDelta(entry.sidecar)) {
        // a page delta is no database on its own: the state it completes is rebuilt from the downloaded
        // chain and checked (ops/pit-state.ts), as restore ID does locally; inside the download, removed with it
        const { stageState } = await import('./pit-state.js');
        const all = await listBackups(fetched.dir, { type: 'database' });
        const staged = await stageState(fetched.dir, all, entry, path.join(fetched.dir, `${entry.id}.state.db`));
        const result = await restoreLocked(cfg, { sourceDir: fetched.dir, entry: staged.entry }, { ...opts, verify: false, only: 'database' }, started);
        return { ...result, verified: true, healed, fetched };
      }
      const result = await restoreLocked(cfg, { sourceDir: fetched.dir, entry }, opts, started);
      return { ...result, healed, fetched };
    } finally {
      await fsp.rm(fetched.dir, { recursive: true, force: true });
    }
  } finally {
    lock.release();
  }
}
