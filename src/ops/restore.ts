import { constants as fsConstants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { type ChainArchive, extractChain } from '../archive/restore-chain.js';
import { manifestChain } from '../catalog/chain.js';
import { resolveRef } from '../catalog/catalog.js';
import { type BackupEntry, componentLookup, findBackup, listBackups } from '../catalog/listing.js';
import { compareIds } from '../catalog/names.js';
import { archivePath, manifestFileOf } from './manifest-of.js';
import { artifactFiles, type BackupType } from '../catalog/sidecar.js';
import { readParts } from '../archive/parts.js';
import { artifactCodec, openArtifact } from '../archive/open-artifact.js';
import type { Config } from '../config.js';
import { decryptToFile, needIdentity } from '../crypto/age-artifact.js';
import type { Identity } from '../crypto/age-keys.js';
import { BackupError, toBackupError, usageError } from '../errors.js';
import { formatBytes } from '../human.js';
import { exists, freeSpace } from '../fsutil.js';
import type { Remote } from '../remote/remote.js';
import { type TransferOptions, downloadBackup, listRemoteBackups, sidecarRel } from '../offsite/transfer.js';
import { extractArchive } from '../archive/extract.js';
import { checkDatabaseFile, checkSourceDatabase, copyDatabaseAside, removeSqliteSidecars, restoreDatabaseInto } from '../sources/sqlite.js';
import { completeSwap, isMountPoint, lockAndHeal, type RestoreJournal, removeJournal, type StorageSwap, undoSwap, writeJournal } from './restore-journal.js';
import { type RestoreSource, resolveRestoreSource } from './restore-source.js';
import { faultPoint } from './fault-point.js';
import { symlinksOnTheWay } from './live-links.js';
import type { ProgressFn } from './progress.js';
import { verifyEntry } from './verify.js';
import { restoreSources, type SourcesRestoreOptions } from './sources.js';
import type { RestoreOutcome } from '../sources/source.js';

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

/** A name beside `base` that does not exist yet: `base`, `base-2`, `base-3`… */
async function freeName(base: string): Promise<string> {
  if (!(await exists(base))) return base;
  for (let n = 2; ; n++) if (!(await exists(`${base}-${n}`))) return `${base}-${n}`;
}

/** Unique per run: two restores (or a killed one and the next) never share a staging name. */
const runTag = () => `${process.pid}-${randomBytes(3).toString('hex')}`;

/** The same error with what the run did (or did not do) to the live data added to its message. */
function withState(err: unknown, state: string, context: string): BackupError {
  const e = toBackupError(err, context);
  return new BackupError(e.code, `${e.message}; ${state}`, { hint: e.hint, cause: e.cause ?? err });
}

const dbFileOf = (entry: BackupEntry) => path.join(path.dirname(entry.sidecarPath!), artifactFiles(entry.sidecar!)[0].file);

/** The database backup must open as SQLite and pass integrity_check before the live one is touched. */
function checkDatabaseBackup(entry: BackupEntry, file = dbFileOf(entry)): void {
  const { integrity } = checkDatabaseFile(file);
  if (integrity !== 'ok') {
    throw new BackupError('DAMAGED', `database backup ${entry.id} cannot be restored: ${file}: ${integrity.split('\n')[0].slice(0, 200)}`, {
      hint: 'restore another backup',
    });
  }
}

interface StagedStorage {
  swap: StorageSwap;
  entries: number;
  bytes: number;
  warnings: string[];
}

/**
 * Unpacks the storage backup where the swap will be cheap, and validates it; nothing live changes. A
 * plain directory: into a sibling, swapped by two renames. A mount point (a Docker volume) cannot be
 * renamed, nor a directory in a parent we cannot write: into a directory inside it, swapped entry by
 * entry, the old entries kept inside it too.
 */
async function stageStorage(
  entry: BackupEntry,
  linkOrDest: string,
  id: string,
  opts: RestoreOptions,
  journal: RestoreJournal,
  stateDir: string,
): Promise<StagedStorage> {
  const s = entry.sidecar!;
  // a storage path that is a symlink (to a mounted volume) stays a symlink: the swap happens where it leads
  const dest = (await fsp.lstat(linkOrDest).catch(() => undefined))?.isSymbolicLink() ? await fsp.realpath(linkOrDest) : linkOrDest;
  const dir = path.dirname(entry.sidecarPath!);
  const parent = path.dirname(dest);
  await fsp.mkdir(parent, { recursive: true });
  const destStat = await fsp.lstat(dest).catch(() => undefined);
  if (destStat && !destStat.isDirectory())
    throw new BackupError('USAGE', `storage path is not a directory: ${dest}`, { hint: 'set --storage-path to the media directory, or use --target DIR' });
  // the contents swap also serves a directory whose parent we may not write: /var/www/app owned by root,
  // its storage by www-data, and the restore run as www-data
  const parentWritable = await fsp.access(parent, fsConstants.W_OK | fsConstants.X_OK).then(
    () => true,
    () => false,
  );
  const mode = destStat && ((await isMountPoint(dest)) || !parentWritable) ? 'contents' : 'rename';
  const base = path.basename(dest);
  const staging = mode === 'rename' ? path.join(parent, `.${base}.restore-${id}-${runTag()}.tmp`) : path.join(dest, `.vertex-restore-${id}-${runTag()}.tmp`);
  const swap: StorageSwap = { dest, mode, staging };
  journal.storage = swap;
  await writeJournal(stateDir, journal);

  const codec = artifactCodec(s);
  if (!codec) throw new BackupError('DAMAGED', `unknown compression '${s.compression}' in ${entry.sidecarPath}`);
  await codec.checkAvailable();
  const where = mode === 'rename' ? parent : dest;
  const free = await freeSpace(where);
  const room = Math.max(0, free - 64 * 1024 * 1024);
  const declared = s.manifest ? s.tree_bytes : s.content_bytes;
  if (declared !== undefined && declared > room) {
    throw new BackupError(
      'NO_SPACE',
      `not enough free space at ${where} to unpack the backup: it holds ${formatBytes(declared)}, ${formatBytes(free)} is free`,
      {
        hint: 'free some space, or restore elsewhere with --target DIR',
      },
    );
  }
  // our archives say how much they hold: one that unpacks to more is damaged or hostile (a gzip bomb);
  // any archive stops before it would fill the disk
  const maxBytes = declared !== undefined ? Math.min(room, declared + 1024 * 1024) : room;
  let extracted;
  let unpacked = 0;
  let unpackedBytes = 0;
  let totals: { files: number; bytes: number } | undefined;
  // totals from the manifest or the sidecar, so a terminal shows percent and ETA as create does
  const progressEntry =
    (total: () => { files?: number; bytes?: number } | undefined) =>
    (_name: string, bytes: number): void => {
      if (++unpacked === 1) faultPoint('staging');
      unpackedBytes += bytes;
      const t = total();
      opts.onProgress?.({ phase: 'restore', subject: entry.id, bytes: unpackedBytes, totalBytes: t?.bytes, files: unpacked, totalFiles: t?.files });
    };
  try {
    if (s.manifest) {
      // incremental storage backup: the manifest says which archive holds each entry (archive/restore-chain.ts)
      const lookup = componentLookup(path.dirname(dir));
      const chain = new Map<string, ChainArchive>();
      for (const rid of s.references ?? []) {
        const e = rid === entry.id ? entry : await lookup('storage', rid);
        if (e?.sidecar && e.sidecarPath) chain.set(rid, { dir: path.dirname(e.sidecarPath), sidecar: e.sidecar });
      }
      const manifests = manifestChain(entry.id, s).map((rid) => {
        const c = chain.get(rid);
        if (!c?.sidecar.manifest)
          throw new BackupError('DAMAGED', `storage backup ${entry.id} needs the manifest of storage backup ${rid}, which is missing or damaged`);
        return manifestFileOf(c.dir, c.sidecar, opts.identities);
      });
      extracted = await extractChain(manifests, (rid) => chain.get(rid), staging, {
        maxBytes: s.tree_bytes !== undefined ? Math.min(room, s.tree_bytes + 1024 * 1024) : room,
        signal: opts.signal,
        include: opts.include?.map((i) => archivePath(entry, i)),
        // encrypted archives: decrypted on the way, and each authenticated in full before the next one
        identities: opts.identities,
        onTotals: (entries, bytes) => {
          totals = { files: entries, bytes };
        },
        onEntry: progressEntry(() => totals),
      });
    } else {
      if (opts.include?.length)
        throw new BackupError('USAGE', `storage backup ${entry.id} has no file manifest: --include needs one`, { hint: 'restore it whole with --target DIR' });
      const artifact = await openArtifact(dir, s, { identities: opts.identities, subject: `storage backup ${entry.id}` });
      extracted = await extractArchive(artifact.stream, staging, {
        maxBytes,
        signal: opts.signal,
        onEntry: progressEntry(() => ({ bytes: s.content_bytes, files: s.entry_count })),
      });
      // the last chunk authenticates the whole payload: nothing is swapped in before it has
      await artifact.authenticate();
      if (s.entry_count !== undefined && extracted.entries !== s.entry_count) {
        throw new BackupError('DAMAGED', `archive unpacked ${extracted.entries} entries, metadata says ${s.entry_count}`);
      }
    }
  } catch (err) {
    if (err instanceof BackupError && maxBytes === room && /archive bomb/.test(err.message)) {
      throw new BackupError('NO_SPACE', `unpacking the backup would need more than the ${formatBytes(free)} free at ${where}`, {
        hint: 'free some space, or restore elsewhere with --target DIR',
      });
    }
    throw toBackupError(err, 'storage restore');
  }
  // the archive holds one top directory (the storage directory's name); older tools may not
  const top = await fsp.readdir(staging);
  swap.newTree = top.length === 1 && (await fsp.lstat(path.join(staging, top[0]))).isDirectory() ? path.join(staging, top[0]) : staging;
  if (destStat) swap.previous = await freeName(mode === 'rename' ? `${dest}.pre-restore-${id}` : path.join(dest, `.pre-restore-${id}`));
  await writeJournal(stateDir, journal);
  return { swap, entries: extracted.entries, bytes: extracted.bytes, warnings: extracted.warnings };
}

async function component(backupDir: string, type: 'database' | 'storage', id: string | null | undefined): Promise<BackupEntry | undefined> {
  if (!id) return undefined;
  const e = (await listBackups(backupDir, { type })).find((x) => x.id === id);
  if (!e) throw new BackupError('DAMAGED', `${type} component ${id} of the full backup is missing`);
  return e;
}

/** Where a restore will keep the current tree, for the plan shown before anything changes. */
async function keptAsFor(linkOrDest: string, id: string): Promise<string | undefined> {
  const st = await fsp.stat(linkOrDest).catch(() => undefined);
  if (!st?.isDirectory()) return undefined;
  const dest = await fsp.realpath(linkOrDest);
  return (await isMountPoint(dest)) ? path.join(dest, `.pre-restore-${id}`) : `${dest}.pre-restore-${id}`;
}

/**
 * A live path that is a symlink planted by another user is refused: www-data replacing `storage` (or
 * `app.db`) with a link to a root-only directory (or database) would make a restore run as root move
 * that directory aside, or overwrite that database, with www-data's content. A link of our own, or of
 * root, is the operator's (storage on a mounted volume) and is followed; so is a link whose owner also
 * owns what it leads to (nothing gained through it).
 */
async function refuseForeignLink(p: string, what: 'database' | 'storage'): Promise<void> {
  // every link on the way counts, not only `p`: root's own link may lead through one the app user owns
  const me = process.getuid?.() ?? -1;
  const foreign = (await symlinksOnTheWay(p)).filter((l) => l.uid !== me && l.uid !== 0);
  if (!foreign.length) return;
  const to = await fsp.stat(p).catch(() => undefined);
  const link = foreign.find((l) => !to || to.uid !== l.uid);
  if (!link) return;
  const which = link.link === p ? 'it is' : `${link.link} on the way is`;
  throw new BackupError(
    'USAGE',
    `refusing to restore the ${what} through ${p}: ${which} a symlink owned by uid ${link.uid} that leads to ${to ? `something owned by uid ${to.uid}` : 'nothing'} (${await fsp.readlink(link.link).catch(() => '?')})`,
    { hint: `check who replaced ${p}; set the real path with --${what === 'database' ? 'db' : 'storage'}-path, or use --target DIR` },
  );
}

/** The live storage path must still lead where it led when the backup was staged beside it. */
async function refuseMovedStorage(live: string, dest: string): Promise<void> {
  const now = (await fsp.lstat(live).catch(() => undefined))?.isSymbolicLink() ? await fsp.realpath(live).catch(() => undefined) : live;
  if (now === dest) return;
  throw new BackupError('USAGE', `refusing to swap the storage: ${live} now leads to ${now ?? 'nothing'}, not ${dest} as when the restore began`, {
    hint: `check who changed ${live} during the restore`,
  });
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

/**
 * The restore itself, the backup-directory lock held by the caller. Order: verify; stage everything that
 * can fail (the storage tree unpacked and checked, the database backup checked, the current database
 * copied aside) while nothing live changes; then the database, then the storage swap. The journal in the
 * backup directory lets the next command complete or roll back a run killed in between.
 */
export async function restoreLocked(cfg: Config, source: RestoreSource, opts: RestoreOptions = {}, started = Date.now()): Promise<RestoreResult> {
  const { entry, sourceDir } = source;
  const warnings: string[] = [];
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
        hint: 'restore another backup, or pass --no-verify to restore it anyway',
      });
    }
  } else if (!entry.sidecar) {
    throw new BackupError('DAMAGED', `${entry.type} backup ${entry.id} is ${entry.status}: ${entry.reason ?? 'no metadata'}`);
  }
  const only = opts.only ?? (opts.include?.length ? 'storage' : undefined);
  if (only && entry.type !== 'full' && entry.type !== only)
    throw new BackupError('USAGE', `${entry.type} backup ${entry.id} holds no ${only}`, {
      argument: true,
      hint: `--only ${only} picks one half of a full backup`,
    });
  let dbEntry =
    only === 'storage'
      ? undefined
      : entry.type === 'database'
        ? entry
        : entry.type === 'full'
          ? await component(sourceDir, 'database', entry.sidecar?.database)
          : undefined;
  const stEntry =
    only === 'database'
      ? undefined
      : entry.type === 'storage'
        ? entry
        : entry.type === 'full'
          ? await component(sourceDir, 'storage', entry.sidecar?.storage)
          : undefined;
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
  const needsKey = sourcesEntry?.sidecar?.components?.find((c) => c.encryption);
  if (needsKey?.encryption && !opts.identities?.length) throw needIdentity({ subject: `database backup ${sourcesEntry!.id}`, info: needsKey.encryption });
  for (const e of [dbEntry, stEntry]) {
    if (e?.sidecar?.encryption && !opts.identities?.length) throw needIdentity({ subject: `${e.type} backup ${e.id}`, info: e.sidecar.encryption });
  }
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

  // 1. everything that can fail, while nothing live changes
  let staged: StagedStorage | undefined;
  let savedCurrentAs: string | undefined;
  let dbExisted = false;
  let dbFile = dbEntry && dbFileOf(dbEntry);
  // an encrypted copy is decrypted and authenticated in full (0600, beside the target) before anything changes
  let decrypted: string | undefined;
  try {
    if (dbEntry) {
      await fsp.mkdir(path.dirname(dbTo), { recursive: true });
      const enc = dbEntry.sidecar?.encryption;
      if (enc) {
        decrypted = path.join(path.dirname(dbTo), `.${path.basename(dbTo)}.restore-${runTag()}.decrypted.tmp`);
        journal.decrypted = decrypted;
        await writeJournal(stateDir, journal);
        const parts = artifactFiles(dbEntry.sidecar!).map((p) => path.join(path.dirname(dbEntry.sidecarPath!), p.file));
        await decryptToFile(readParts(parts), decrypted, { identities: opts.identities ?? [], subject: `database backup ${dbEntry.id}`, info: enc });
        dbFile = decrypted;
      }
      if (!verify || enc) checkDatabaseBackup(dbEntry, dbFile);
      dbExisted = await exists(dbTo);
      if (dbExisted) {
        await checkSourceDatabase(dbTo, 'current database').catch((err: BackupError) => {
          throw new BackupError('USAGE', `refusing to restore over ${dbTo}: ${err.message}`, { hint: 'move that file away or use --target DIR' });
        });
      }
    }
    if (stEntry) staged = await stageStorage(stEntry, stTo, id, opts, journal, stateDir);
    opts.signal?.throwIfAborted();
    if (dbEntry && dbExisted) {
      const aside = await freeName(`${dbTo}.pre-restore-${id}`);
      const asideTemp = path.join(path.dirname(dbTo), `.${path.basename(dbTo)}.pre-restore-${runTag()}.tmp`);
      journal.database = { live: dbTo, asideTemp };
      await writeJournal(stateDir, journal);
      await copyDatabaseAside(dbTo, aside, asideTemp);
      savedCurrentAs = aside;
    }
    faultPoint('staged');
    opts.signal?.throwIfAborted();
  } catch (err) {
    if (staged || journal.storage) await fsp.rm(journal.storage!.staging, { recursive: true, force: true });
    if (decrypted) await fsp.rm(decrypted, { force: true });
    await removeJournal(stateDir);
    throw withState(err, 'nothing was changed', 'restore');
  }
  try {
    return await applyRestore();
  } finally {
    if (decrypted) await fsp.rm(decrypted, { force: true });
  }

  async function applyRestore(): Promise<RestoreResult> {
    // 2. the database: SQLite replaces it in one transaction, so a failure leaves the previous one
    let database: RestoreResult['database'];
    if (dbEntry) {
      journal.phase = 'database';
      journal.database = { live: dbTo, savedAs: savedCurrentAs };
      await writeJournal(stateDir, journal);
      faultPoint('database');
      try {
        // again at write time: a link planted during the verification (minutes, for a big backup) would
        // have the database written through it
        await refuseForeignLink(dbTo, 'database');
        const { integrity } = await restoreDatabaseInto(dbFile!, dbTo);
        faultPoint('database-done');
        if (integrity !== 'ok') {
          if (savedCurrentAs) await restoreDatabaseInto(savedCurrentAs, dbTo);
          else {
            await fsp.rm(dbTo, { force: true });
            removeSqliteSidecars(dbTo);
          }
          throw new BackupError('FAILED', `the restored database failed integrity_check (${integrity.slice(0, 200)}) and was put back`);
        }
        // a live database keeps its owner and mode (the application may run as another user)
        if (!dbExisted) await fsp.chmod(dbTo, 0o600).catch(() => {});
        database = { backupId: dbEntry.id, to: dbTo, savedCurrentAs, integrity };
      } catch (err) {
        if (staged) await fsp.rm(staged.swap.staging, { recursive: true, force: true });
        await removeJournal(stateDir);
        const kept = savedCurrentAs ? ` (a copy of it is at ${savedCurrentAs})` : '';
        throw withState(err, `the live database ${dbTo} was not changed${kept}${staged ? `, nor the storage at ${staged.swap.dest}` : ''}`, 'database restore');
      }
    }

    // 3. the storage swap; from here a killed run is completed by the next command
    let storage: RestoreResult['storage'];
    if (stEntry && staged) {
      journal.phase = 'storage';
      await writeJournal(stateDir, journal);
      faultPoint('storage');
      try {
        await refuseForeignLink(stTo, 'storage');
        await refuseMovedStorage(stTo, staged.swap.dest);
        await completeSwap(staged.swap, async (p) => {
          journal.phase = p;
          await writeJournal(stateDir, journal);
        });
      } catch (err) {
        await undoSwap(staged.swap).catch(() => {});
        await removeJournal(stateDir);
        const db = database
          ? `the database at ${dbTo} WAS restored from backup ${database.backupId}${savedCurrentAs ? ` (the previous one is at ${savedCurrentAs})` : ''}, `
          : '';
        throw withState(err, `${db}the storage at ${staged.swap.dest} was not changed`, 'storage swap');
      }
      storage = {
        backupId: stEntry.id,
        to: staged.swap.dest,
        previousKeptAs: staged.swap.previous,
        entries: staged.entries,
        bytes: staged.bytes,
        warnings: staged.warnings,
      };
    }
    await removeJournal(stateDir);
    return { ...plan, database, sources, storage, warnings: warnings.length ? warnings : undefined, durationMs: Date.now() - started };
  }
}

// restore --from: a remote backup downloaded, verified, then restored like a local one

export interface FetchedBackup {
  /** a backup directory layout holding just this backup (and its components); remove it when done */
  dir: string;
  type: BackupType;
  id: string;
  sidecarPath: string;
  bytes: number;
  ms: number;
}

/**
 * Downloads a remote backup into a fresh temporary directory beside the backup directory (same
 * filesystem, so the restore's renames stay cheap), verifying every file against its sidecar on the way.
 */
export async function fetchRemoteBackup(
  remote: Remote,
  ref: string,
  backupDir: string,
  options: TransferOptions & {
    type?: BackupType;
    /** decrypt the manifests an encrypting remote holds with these (restore and drill read the download the same way) */
    identities?: Identity[];
  } = {},
): Promise<FetchedBackup> {
  const started = Date.now();
  const list = await listRemoteBackups(remote, { ...options, type: options.type });
  const b = resolveRef(
    list.filter((x) => x.status === 'ok' || x.status === 'partial'),
    ref,
  );
  if (!b) throw usageError(`no complete backup "${ref}" on ${remote.url}`, 'see what it holds with: list --remote NAME');
  await fsp.mkdir(backupDir, { recursive: true, mode: 0o700 });
  const dir = await fsp.mkdtemp(path.join(backupDir, `.remote-restore-${b.id}-`));
  let bytes = 0;
  try {
    const sidecarPath = await downloadBackup(remote, b.type, b.id, dir, {
      ...options,
      onEvent: (e) => {
        if (e.kind === 'download') bytes += e.size;
        options.onEvent?.(e);
      },
    });
    // an encrypting remote holds sealed sidecars: opened here; its encrypted manifests are then read like
    // a local encrypted backup's, through age (manifest-of.ts), never written out in plaintext
    if (options.identities) await (await import('../offsite/sealed-fields.js')).unsealFetchedSidecars(dir, options.identities);
    return { dir, type: b.type, id: b.id, sidecarPath, bytes, ms: Date.now() - started };
  } catch (err) {
    await fsp.rm(dir, { recursive: true, force: true });
    if (err instanceof BackupError && err.code === 'DAMAGED') {
      throw new BackupError('DAMAGED', `${err.message}: refusing to restore from it`, { hint: 'try an older backup: list --remote NAME', cause: err });
    }
    throw err;
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
  const { lockAndHeal } = await import('./restore-journal.js');
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
      const result = await restoreLocked(cfg, { sourceDir: fetched.dir, entry }, opts, started);
      return { ...result, healed, fetched };
    } finally {
      await fsp.rm(fetched.dir, { recursive: true, force: true });
    }
  } finally {
    lock.release();
  }
}
