import { createHash } from 'node:crypto';
import { constants as fsConstants, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { type ManifestFile, ManifestWriter, manifestFileName, readView } from '../archive/manifest.js';
import { manifestChain, type NextLevel, nextLevel } from '../catalog/chain.js';
import { type BackupEntry, listBackups } from '../catalog/local-store.js';
import { acquireLock } from '../catalog/lock.js';
import { healIfInterrupted } from './restore-journal.js';
import { baseName, compareIds, parseName, sidecarPath, timestampOf, typeDir } from '../catalog/names.js';
import type { BackupType, Sidecar, WrittenSidecar } from '../catalog/sidecar.js';
import { BACKUP_TYPES, SIDECAR_FORMAT } from '../catalog/sidecar.js';
import type { CodecProgress } from '../codec/external.js';
import { getCodec } from '../codec/registry.js';
import { AGE_EXTENSION, encryptFileInto, encryptStage } from '../crypto/age-artifact.js';
import { describeRecipient, type Recipient } from '../crypto/age-keys.js';
import { resolveRecipients } from '../crypto/age-settings.js';
import { PartWriter } from '../archive/parts.js';
import type { Config } from '../config.js';
import { BackupError, toBackupError } from '../errors.js';
import { formatBytes } from '../human.js';
import { ensureDir, freeSpace, sha256File, writeFileAtomic } from '../fsutil.js';
import { packTree } from '../archive/pack.js';
import { refuseUnexpectedlyEmpty } from './empty-tree.js';
import { encryptManifest, manifestCacheDir, plaintextManifestDir, previousEncryptedManifest, pruneManifestCache } from './encrypted-manifest.js';
import { faultPoint } from './fault-point.js';
import { checkStorageDir, pathsInside, type SkippedPath, treeSize } from '../archive/tree.js';
import { ChangePlan } from '../archive/changes.js';
import { backupDatabase, checkSourceDatabase, removeSqliteSidecars } from '../sources/sqlite.js';
import { TOOL } from '../version.js';
import { databaseSources } from '../sources/kinds.js';
import { backupSources } from './sources.js';
import { backupDatabaseIncremental, type DatabaseRunOptions } from './db-delta.js';
import type { ProgressFn } from './progress.js';

export interface CreateOptions {
  type?: BackupType;
  signal?: AbortSignal;
  onProgress?: ProgressFn;
  /** wait this long for another run's lock before giving up (exit 4) */
  lockWaitMs?: number;
  now?: () => Date;
  storage?: StorageRunOptions;
  /** encrypt to these age recipients; undefined: BACKUP_RECIPIENTS(_FILE) decide; null: never */
  recipients?: Recipient[] | null;
  /** the SQLite database as page deltas (`--incremental`, see ops/db-delta.ts) */
  database?: DatabaseRunOptions;
}

export interface CreatedBackup {
  type: BackupType;
  id: string;
  sidecarPath: string;
  files: string[];
  /** its files' bytes (a full backup: its components', as list shows it) */
  sizeBytes: number;
  checksum?: string;
  fileCount?: number;
  durationMs: number;
  warnings: string[];
  /** storage: paths that could not be read, left out */
  skipped?: SkippedPath[];
  notes?: string[];
  /** storage: 0 for a backup of every file, N for one of what changed since the previous backup */
  level?: number;
  /** a database backup of sources (PostgreSQL): the databases it holds */
  databases?: string[];
}

export interface CreateResult {
  ok: boolean;
  type: BackupType;
  id: string;
  /** the full backup's status; for database/storage runs 'ok' when ok */
  status: 'ok' | 'partial' | 'failed';
  backups: CreatedBackup[];
  sizeBytes: number;
  durationMs: number;
  errors: string[];
  warnings: string[];
  /** paths of the storage directory that could not be read: the backup is made without them (exit 6) */
  skipped: SkippedPath[];
  /** what was left out on purpose (the backup directory inside the storage directory) */
  notes: string[];
}

/**
 * A `YYYYMMDD_HHMMSS` id after every id in the backup directory: ids order the catalog ("latest",
 * keep-last, chains). In the second of the newest backup (of any type) it takes the next `_N`; a
 * clock that is behind (a board without a battery-backed clock before NTP has synced, a bad manual
 * setting) would name the newest backup as the oldest, the first one rotation removes, so such a
 * backup takes the newest id's second too, and the run says why.
 */
async function allocateId(backupDir: string, now: Date): Promise<{ id: string; warning?: string }> {
  let newest: string | undefined;
  for (const t of BACKUP_TYPES) {
    for (const name of await fsp.readdir(typeDir(backupDir, t)).catch(() => [] as string[])) {
      const p = parseName(name);
      if (p && (newest === undefined || compareIds(p.id, newest) > 0)) newest = p.id;
    }
  }
  const clock = timestampOf(now);
  const order = newest === undefined ? 1 : compareIds(clock, newest.slice(0, clock.length));
  if (order > 0) return { id: clock };
  const ts = newest!.slice(0, clock.length);
  let id = ts;
  for (let n = 2; compareIds(id, newest!) <= 0; n++) id = `${ts}_${n}`;
  const warning =
    order < 0
      ? `the system clock (${now.toISOString()}) is behind the newest backup ${newest}: this backup is named ${id}; set the clock (NTP, timedatectl)`
      : undefined;
  return { id, warning };
}

/** A backup directory we cannot write to is a configuration problem (exit 2), found before any work. */
export async function checkBackupDirWritable(dir: string): Promise<void> {
  try {
    await ensureDir(dir);
    await fsp.access(dir, fsConstants.W_OK | fsConstants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new BackupError('USAGE', `backup directory is not writable: ${dir} (${code ?? (err as Error).message})`, {
      hint: 'set the backup directory (BACKUP_DIR) to a writable directory',
      remedy: 'backup-dir-writable',
    });
  }
}

/** Temp files in the backup directory while we hold the lock are leftovers of a killed run. */
export async function removeTempLeftovers(backupDir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const t of ['database', 'storage', 'full'] as BackupType[]) {
    const dir = typeDir(backupDir, t);
    for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
      if (parseName(name)?.temp) {
        await fsp.rm(path.join(dir, name), { force: true, recursive: true });
        removed.push(path.join(dir, name));
      }
    }
  }
  return removed;
}

/**
 * What a restore into a mount point keeps inside it (the previous contents, a staging tree): not the
 * application's data, so never backed up (and so never restored into the tree again).
 */
const RESTORE_LEFTOVERS = ['/.pre-restore-[0-9]*', '/.vertex-restore-*'];

/** The archive size to expect for a tree: the codec's typical ratio plus a tar header per file. */
export function archiveEstimate(t: { bytes: number; files: number }, compression: string): number {
  return t.bytes * getCodec(compression).sizeFactor + t.files * 1024;
}

async function estimateBytes(
  cfg: Config,
  types: BackupType[],
  storageRun?: StorageRunPlan,
): Promise<{ bytes: number; tree?: { bytes: number; files: number } }> {
  let bytes = 0;
  let tree: { bytes: number; files: number } | undefined;
  if (types.includes('database')) {
    for (const f of [cfg.dbPath, `${cfg.dbPath}-wal`]) bytes += (await fsp.stat(f).catch(() => undefined))?.size ?? 0;
  }
  const prevSidecar = storageRun?.previous?.sidecar;
  if (types.includes('storage') && storageRun && storageRun.next.level > 0 && prevSidecar) {
    // a level N holds what changed, unknown before the walk: room for a manifest is checked here, and a
    // disk that fills up mid-way is handled like any write error (partial files removed); the previous
    // manifest's tree stands in for the progress totals, without a second walk
    bytes += 2 * (prevSidecar.manifest?.size ?? 0);
    tree = { bytes: prevSidecar.tree_bytes ?? 0, files: prevSidecar.tree_files ?? 0 };
  } else if (types.includes('storage')) {
    const t = await treeSize(cfg.storagePath, [...cfg.exclude, ...RESTORE_LEFTOVERS], [cfg.backupDir]);
    bytes += archiveEstimate(t, cfg.compression);
    tree = t;
  }
  return { bytes, tree };
}

/** Refuses to start a backup that cannot fit: better a clear exit 5 now than ENOSPC at 90%. */
export async function checkFreeSpace(
  cfg: Config,
  types: BackupType[],
  storageRun?: StorageRunPlan,
): Promise<{ needed: number; free: number; tree?: { bytes: number; files: number } }> {
  const estimate = await estimateBytes(cfg, types, storageRun);
  const needed = Math.ceil(estimate.bytes * 1.05) + 16 * 1024 * 1024;
  const free = await freeSpace(cfg.backupDir);
  if (needed > free) {
    throw new BackupError(
      'NO_SPACE',
      `not enough free space at ${cfg.backupDir}: the backup needs about ${formatBytes(needed)}, ${formatBytes(free)} is free`,
      {
        hint: 'free some space or remove old backups (rotate)',
        remedy: 'remove-old',
      },
    );
  }
  return { needed, free, tree: estimate.tree };
}

function baseSidecar(type: BackupType, id: string, started: Date): WrittenSidecar {
  return {
    format: SIDECAR_FORMAT,
    tool: TOOL,
    id,
    type,
    timestamp: id.slice(0, 15),
    created_at: started.toISOString(),
    duration_ms: 0,
  };
}

async function backupDatabasePart(cfg: Config, id: string, opts: CreateOptions, recipients?: Recipient[]): Promise<CreatedBackup> {
  const sources = databaseSources(cfg);
  if (sources) {
    const b = await backupSources(cfg, await sources.sources(), id, {
      recipients,
      signal: opts.signal,
      onProgress: (subject, bytes) => opts.onProgress?.({ phase: 'database', subject, bytes }),
    });
    const databases = b.components.filter((c) => c.role === 'data').map((c) => c.name);
    return { type: 'database', id, sidecarPath: b.sidecarPath, files: b.files, sizeBytes: b.size, durationMs: b.durationMs, warnings: [], databases };
  }
  if (opts.database?.incremental) {
    const b = await backupDatabaseIncremental(cfg, id, opts.now?.() ?? new Date(), opts.database, opts.signal, recipients);
    return {
      type: 'database',
      id,
      sidecarPath: b.sidecarPath,
      files: b.files,
      sizeBytes: b.size,
      checksum: b.checksum,
      durationMs: b.durationMs,
      warnings: [],
      notes: b.level === 0 && b.reason ? [`level 0: ${b.reason}`] : undefined,
      level: b.level,
    };
  }
  const started = new Date();
  const dir = typeDir(cfg.backupDir, 'database');
  await ensureDir(dir);
  const plainName = `${baseName('database', id)}.db`;
  const name = recipients ? plainName + AGE_EXTENSION : plainName;
  const final = path.join(dir, name);
  const tmp = path.join(dir, `${plainName}.tmp`);
  try {
    let copying = false;
    const info = await backupDatabase(cfg.dbPath, tmp, (bytes, total) => {
      if (!copying) faultPoint('database-copy');
      copying = true;
      opts.onProgress?.({ phase: 'database', subject: id, bytes, totalBytes: total });
    });
    opts.signal?.throwIfAborted();
    let checksum: string;
    let size: number;
    let encryption: Sidecar['encryption'];
    if (recipients) {
      // the online backup API needs a real file: the plaintext copy lives only until it is encrypted
      const writer = new PartWriter(dir, name);
      try {
        encryption = await encryptFileInto(tmp, writer, recipients);
        ({ checksum, size } = await writer.commit());
      } catch (err) {
        await writer.abort();
        throw err;
      } finally {
        await fsp.rm(tmp, { force: true });
      }
    } else {
      ({ checksum, size } = await sha256File(tmp));
      await fsp.rename(tmp, final);
    }
    const sidecar: WrittenSidecar = {
      ...baseSidecar('database', id, started),
      duration_ms: Date.now() - started.getTime(),
      original_path: cfg.dbPath,
      backup_path: name,
      file_size: size,
      checksum,
      compression: 'none',
      sqlite: info,
      encryption,
    };
    const sc = sidecarPath(cfg.backupDir, 'database', id);
    await writeFileAtomic(sc, `${JSON.stringify(sidecar, null, 2)}\n`);
    return { type: 'database', id, sidecarPath: sc, files: [final, sc], sizeBytes: size, checksum, durationMs: sidecar.duration_ms, warnings: [] };
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    removeSqliteSidecars(tmp);
    throw toBackupError(err, 'database backup');
  }
}

/** Incremental storage runs: `--full`, `--reread`, `--full-every` (see catalog/chain.ts). */
export interface StorageRunOptions {
  /** force a level 0 */
  full?: boolean;
  /** hash every file instead of trusting unchanged metadata */
  reread?: boolean;
  /** a new level 0 once the chain's base is this old (default 7 days) */
  fullEveryMs?: number;
  /** back up an empty storage directory even though the last backup of it held files (see ops/empty-tree.ts) */
  allowEmpty?: boolean;
}

export const DEFAULT_FULL_EVERY_MS = 7 * 86_400_000;
/** a new level 0 once the chain stores more dead content than this share of its base */
const MAX_CHAIN_WASTE = 0.5;

/** Nightly manifests are a few bytes to a few KB: one synchronous read beats a stream's round trips. */
async function manifestChecksum(file: string, size: number): Promise<string | undefined> {
  try {
    if (size <= 1 << 20) return createHash('sha256').update(readFileSync(file)).digest('hex');
    return (await sha256File(file)).checksum;
  } catch {
    return undefined;
  }
}

/** The backup the next incremental run compares with: the newest good storage backup of this tree with a manifest. */
async function previousStorage(cfg: Config): Promise<{ entries: BackupEntry[]; previous?: BackupEntry; manifests?: ManifestFile[]; warning?: string }> {
  const entries = await listBackups(cfg.backupDir, { type: 'storage' });
  const previous = entries.find((e) => e.status === 'ok' && e.sidecar?.manifest && e.sidecar.level !== undefined);
  if (!previous) return { entries };
  if (path.resolve(previous.sidecar!.original_path ?? '') !== path.resolve(cfg.storagePath)) return { entries };
  // made before level N manifests held only changes: its chain cannot be replayed by hand, start anew
  if (!previous.sidecar!.chain) return { entries };
  // a damaged manifest anywhere in the chain must not poison the next backup: start a new chain instead
  const manifests: ManifestFile[] = [];
  for (const cid of manifestChain(previous.id, previous.sidecar!)) {
    const e = entries.find((x) => x.id === cid);
    const m = e?.sidecar?.manifest;
    const file = m ? path.join(path.dirname(e.sidecarPath!), m.file) : undefined;
    const got = file ? await manifestChecksum(file, m!.size) : undefined;
    if (!file || got !== m?.checksum)
      return { entries, warning: `the manifest of storage backup ${cid} is damaged or missing: starting a new chain (level 0)` };
    if (m?.encryption && m.file.endsWith(AGE_EXTENSION)) {
      const readable = await previousEncryptedManifest(cfg, file, e!.sidecar!);
      if (!readable) {
        return {
          entries,
          warning: `the manifest of storage backup ${cid} is encrypted and neither its plaintext copy (${manifestCacheDir(cfg)}) nor an identity (AGE_IDENTITY_FILE) is at hand: starting a new chain (level 0)`,
        };
      }
      manifests.push(readable);
      continue;
    }
    manifests.push({ file });
  }
  return { entries, previous, manifests };
}

export interface StorageRunPlan {
  previous?: BackupEntry;
  /** the manifests of the previous backup's chain, oldest first: the tree this run compares with */
  manifests?: ManifestFile[];
  next: NextLevel;
  warning?: string;
}

/** Which level the next storage backup is, and the backup it is compared with. */
export async function planStorageRun(cfg: Config, opts: CreateOptions = {}, recipients?: Recipient[]): Promise<StorageRunPlan> {
  const run = opts.storage ?? {};
  const { entries, previous, manifests, warning } = await previousStorage(cfg);
  const sidecarOf = (sid: string) => entries.find((e) => e.id === sid && e.status === 'ok')?.sidecar;
  const next = nextLevel(previous?.sidecar, sidecarOf, {
    full: run.full,
    fullEveryMs: run.fullEveryMs ?? DEFAULT_FULL_EVERY_MS,
    maxWaste: MAX_CHAIN_WASTE,
    now: (opts.now ?? (() => new Date()))(),
    recipients: recipients?.map(describeRecipient),
  });
  return { previous, manifests, next, warning };
}

async function backupStoragePart(
  cfg: Config,
  id: string,
  opts: CreateOptions,
  storageRun?: StorageRunPlan,
  total?: { bytes: number; files: number },
  recipients?: Recipient[],
): Promise<CreatedBackup> {
  const run = storageRun ?? (await planStorageRun(cfg, opts, recipients));
  const previousFailed: { err?: unknown } = {};
  try {
    return await storageAttempt(cfg, id, opts, run, total, recipients, previousFailed);
  } catch (err) {
    if (!previousFailed.err || opts.signal?.aborted) throw err;
    // a manifest of the previous chain that matched its checksum but cannot be read (a record too long,
    // a bad field: written so, or planted with its sidecar) must not stop every backup from now on
    const why = `the manifest chain of storage backup ${run.previous!.id} cannot be read (${toBackupError(previousFailed.err).message})`;
    const level0: StorageRunPlan = { previous: run.previous, next: { level: 0 }, warning: `${why}: starting a new chain (level 0)` };
    return storageAttempt(cfg, id, opts, level0, total, recipients, {});
  }
}

/** The records of the previous chain, noting in `seen` a failure to read them (see backupStoragePart). */
async function* watched<T>(records: AsyncGenerator<T>, seen: { err?: unknown }): AsyncGenerator<T> {
  try {
    yield* records;
  } catch (err) {
    seen.err = err;
    throw err;
  }
}

async function storageAttempt(
  cfg: Config,
  id: string,
  opts: CreateOptions,
  storageRun: StorageRunPlan,
  total: { bytes: number; files: number } | undefined,
  recipients: Recipient[] | undefined,
  previousFailed: { err?: unknown },
): Promise<CreatedBackup> {
  const started = new Date();
  // the chain's age (--full-every) is measured on the clock the id comes from (a test's or bench's `now`)
  const createdAt = opts.now?.() ?? started;
  const dir = typeDir(cfg.backupDir, 'storage');
  await ensureDir(dir);
  const codec = getCodec(cfg.compression);
  const name = `${baseName('storage', id)}${codec.extension}${recipients ? AGE_EXTENSION : ''}`;
  const encrypt = recipients ? await encryptStage(recipients) : undefined;
  const run = opts.storage ?? {};
  const { previous: prevEntry, manifests, warning, next } = storageRun;
  const prev = next.level > 0 ? prevEntry!.sidecar! : undefined;
  // an encrypted backup's manifest is written in plaintext outside the backup directory, then encrypted into it
  const plainDir = recipients ? await plaintextManifestDir(cfg) : undefined;
  const manifestWriter = recipients
    ? new ManifestWriter(plainDir ?? dir, plainDir ? manifestFileName(baseName('storage', id)) : `${manifestFileName(baseName('storage', id))}.plain.tmp`)
    : new ManifestWriter(dir, manifestFileName(baseName('storage', id)));
  let plainManifest: string | undefined;
  // a level N manifest holds what changed since the tree its chain describes
  const chain = prev ? [...manifestChain(prevEntry!.id, prev), id] : [id];
  const previousRecords = prev ? watched(readView(manifests!), previousFailed) : undefined;
  const plan = new ChangePlan(id, manifestWriter, previousRecords, run.reread, prev ? manifests : undefined);
  const writer = new PartWriter(dir, name, cfg.splitSize, (written) => opts.onProgress?.({ phase: 'storage', subject: id, writtenBytes: written }));
  let last = { files: 0, bytes: 0 };
  let backlogBytes: number | undefined;
  const report = () => opts.onProgress?.({ phase: 'storage', subject: id, ...last, totalFiles: total?.files, totalBytes: total?.bytes, backlogBytes });
  const { stream, result } = packTree(cfg.storagePath, {
    plan,
    exclude: cfg.exclude,
    leftovers: RESTORE_LEFTOVERS,
    excludePaths: [cfg.backupDir],
    signal: opts.signal,
    onProgress: ({ files, bytes }) => {
      last = { files, bytes };
      report();
    },
  });
  const committed: string[] = [];
  try {
    const compressor = codec.compressor({ level: cfg.compressionLevel });
    // a compressor that says how far it is (xz): what it holds but has not compressed is work still to
    // do, so the estimate counts it (xz -T0 at 40% read once said "ETA 5.9 s" and then took 8.5 minutes)
    compressor.on('codec-progress', (p: CodecProgress) => {
      backlogBytes = Math.max(0, p.fed - p.consumed);
      report();
    });
    await (encrypt
      ? pipeline(stream, compressor, encrypt.stream, writer, { signal: opts.signal })
      : pipeline(stream, compressor, writer, { signal: opts.signal }));
    const packed = await result;
    await plan.finish();
    await plan.close();
    const artifact = await writer.commit();
    committed.push(...artifact.files);
    let manifest: NonNullable<Sidecar['manifest']> = await manifestWriter.commit();
    if (recipients) {
      plainManifest = path.join(plainDir ?? dir, manifest.file);
      const enc = await encryptManifest(plainManifest, manifest, dir, recipients);
      manifest = enc.manifest;
      committed.push(...enc.files);
      // no plaintext copy of the file list stays in the backup directory
      if (!plainDir) await fsp.rm(plainManifest, { force: true });
      else await pruneManifestCache(plainDir, chain);
    } else committed.push(path.join(dir, manifest.file));
    if (warning) packed.warnings.unshift(warning);
    const referenced = plan.stats.referenced;
    // oldest first (ids are timestamps): the archives that hold its files, and the manifests of its chain
    const references = [...new Set([...referenced.keys(), ...chain])].sort(compareIds);
    const sidecar: WrittenSidecar = {
      ...baseSidecar('storage', id, createdAt),
      duration_ms: Date.now() - started.getTime(),
      original_path: cfg.storagePath,
      backup_path: name,
      file_size: artifact.size,
      checksum: artifact.checksum,
      compression: codec.name,
      file_count: packed.fileCount,
      entry_count: packed.entryCount,
      content_bytes: packed.bytes,
      parts: artifact.parts,
      encryption: encrypt?.info(),
      level: next.level,
      base: prev ? (prev.base ?? prev.id) : id,
      previous: prev?.id,
      manifest,
      chain,
      references,
      referenced_bytes: Object.fromEntries(references.map((r) => [r, referenced.get(r) ?? 0])),
      tree_files: plan.stats.files,
      tree_bytes: [...referenced.values()].reduce((a, b) => a + b, 0),
      warnings: packed.warnings.length ? packed.warnings : undefined,
      skipped: packed.skipped.length ? packed.skipped : undefined,
      notes: packed.notes.length ? packed.notes : undefined,
      exclude: cfg.exclude.length ? cfg.exclude : undefined,
    };
    const sc = sidecarPath(cfg.backupDir, 'storage', id);
    await writeFileAtomic(sc, `${JSON.stringify(sidecar, null, 2)}\n`);
    return {
      type: 'storage',
      id,
      sidecarPath: sc,
      files: [...committed, sc],
      sizeBytes: artifact.size,
      checksum: artifact.checksum,
      fileCount: packed.fileCount,
      durationMs: sidecar.duration_ms,
      warnings: packed.warnings,
      skipped: packed.skipped,
      notes: next.reason && next.level === 0 && prevEntry && !next.routine ? [...packed.notes, `level 0: ${next.reason}`] : packed.notes,
      level: next.level,
    };
  } catch (err) {
    stream.destroy();
    await plan.close().catch(() => {});
    await writer.abort();
    await manifestWriter.abort();
    if (plainManifest) await fsp.rm(plainManifest, { force: true });
    // without its sidecar the archive is not a backup: do not leave it behind
    await Promise.all(committed.map((f) => fsp.rm(f, { force: true })));
    throw toBackupError(err, 'storage backup');
  }
}

const partsOf = (type: BackupType): BackupType[] => (type === 'full' ? ['database', 'storage'] : [type]);

/**
 * Every input checked before a byte is written (the lock file included): a typo in a path is exit 2
 * and leaves nothing behind, not a partial backup or an empty backup directory.
 */
export async function checkInputs(cfg: Config, type: BackupType, storage: StorageRunOptions = {}): Promise<void> {
  const parts = partsOf(type);
  const sources = databaseSources(cfg);
  if (parts.includes('database')) await (sources ? sources.check() : checkSourceDatabase(cfg.dbPath));
  if (parts.includes('storage')) {
    await checkStorageDir(cfg.storagePath);
    if (!storage.allowEmpty) await refuseUnexpectedlyEmpty(cfg);
    await getCodec(cfg.compression).checkAvailable();
    // inside the storage directory it is left out of the archive (packTree); being it cannot work
    if ((await pathsInside(cfg.storagePath, [cfg.backupDir])).includes('')) {
      throw new BackupError('USAGE', `the backup directory ${cfg.backupDir} is the storage directory`, {
        hint: 'set the backup directory (BACKUP_DIR) to a directory outside the storage directory',
        remedy: 'backup-dir-outside',
      });
    }
  }
}

/** The create operation without locking: for callers that already hold the lock (create --rotate). */
export async function runCreate(cfg: Config, opts: CreateOptions = {}): Promise<CreateResult> {
  const type = opts.type ?? 'full';
  const started = Date.now();
  const parts = partsOf(type);
  await checkInputs(cfg, type, opts.storage);
  await checkBackupDirWritable(cfg.backupDir);
  const recipients = opts.recipients === undefined ? resolveRecipients({}, cfg.env) : (opts.recipients ?? undefined);
  const storageRun = parts.includes('storage') ? await planStorageRun(cfg, opts, recipients) : undefined;
  const { tree } = await checkFreeSpace(cfg, parts, storageRun);
  await removeTempLeftovers(cfg.backupDir);

  // tests stop a run here, holding the lock with nothing written yet (see ops/fault-point.ts)
  faultPoint('create-locked');
  // one clock reading names the run and dates the full backup: its id is its created_at second
  // (reading the clock again after the checks above put them seconds apart)
  const idTime = (opts.now ?? (() => new Date()))();
  const { id, warning: clockWarning } = await allocateId(cfg.backupDir, idTime);
  const backups: CreatedBackup[] = [];
  const errors: string[] = [];
  const failures: BackupError[] = [];
  for (const part of parts) {
    try {
      opts.signal?.throwIfAborted();
      backups.push(
        part === 'database' ? await backupDatabasePart(cfg, id, opts, recipients) : await backupStoragePart(cfg, id, opts, storageRun, tree, recipients),
      );
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      const e = toBackupError(err);
      failures.push(e);
      errors.push(e.message);
      // a single-type run has nothing to keep; a full run keeps the good half (the seed's behaviour)
      if (type !== 'full') throw e;
    }
  }
  const warnings = [...(clockWarning ? [clockWarning] : []), ...backups.flatMap((b) => b.warnings)];
  const skipped = backups.flatMap((b) => b.skipped ?? []);
  const notes = backups.flatMap((b) => b.notes ?? []);
  const size = backups.reduce((s, b) => s + b.sizeBytes, 0);
  if (type === 'full') {
    if (backups.length === 0) throw failures[0];
    const status = backups.length === parts.length ? 'ok' : 'partial';
    const sidecar: WrittenSidecar = {
      ...baseSidecar('full', id, idTime),
      duration_ms: Date.now() - started,
      database: backups.find((b) => b.type === 'database')?.id ?? null,
      storage: backups.find((b) => b.type === 'storage')?.id ?? null,
      status,
      file_size: size,
      errors: errors.length ? errors : undefined,
    };
    const sc = sidecarPath(cfg.backupDir, 'full', id);
    await ensureDir(path.dirname(sc));
    await writeFileAtomic(sc, `${JSON.stringify(sidecar, null, 2)}\n`);
    backups.push({ type: 'full', id, sidecarPath: sc, files: [sc], sizeBytes: size, durationMs: sidecar.duration_ms, warnings: [] });
    return { ok: status === 'ok', type, id, status, backups, sizeBytes: size, durationMs: Date.now() - started, errors, warnings, skipped, notes };
  }
  return { ok: true, type, id, status: 'ok', backups, sizeBytes: size, durationMs: Date.now() - started, errors, warnings, skipped, notes };
}

/** Creates a backup under the backup directory's lock. */
export async function createBackup(cfg: Config, opts: CreateOptions = {}): Promise<CreateResult> {
  // a restore killed mid-swap may have left no storage directory: complete it before checking inputs
  await healIfInterrupted(cfg.backupDir, `create --type ${opts.type ?? 'full'}`, { dbPath: cfg.dbPath, storagePath: cfg.storagePath, config: cfg });
  await checkInputs(cfg, opts.type ?? 'full', opts.storage);
  const lock = await acquireLock(cfg.backupDir, `create --type ${opts.type ?? 'full'}`, { waitMs: opts.lockWaitMs, signal: opts.signal });
  try {
    return await runCreate(cfg, opts);
  } finally {
    lock.release();
  }
}
