import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { finished, pipeline } from 'node:stream/promises';
import { artifactFiles, type BackupEntry, findBackup, listBackups } from '../catalog/listing.js';
import { acquireLock } from '../catalog/lock.js';
import type { BackupType } from '../catalog/sidecar.js';
import { readParts } from '../codec/parts.js';
import { codecForFile, getCodec } from '../codec/registry.js';
import type { Config } from '../config.js';
import { decryptStage, decryptToFile, needIdentity, plaintextProblem } from '../crypto/age-artifact.js';
import type { Identity } from '../crypto/age-keys.js';
import { BackupError, toBackupError } from '../errors.js';
import { exists, formatBytes, fsyncDir, freeSpace, writeFileAtomic } from '../fsutil.js';
import { extractArchive } from '../sources/extract.js';
import { checkSourceDatabase, copyDatabaseAside, restoreDatabaseInto } from '../sources/sqlite.js';
import type { ProgressFn } from './progress.js';
import { verifyEntry } from './verify.js';

export interface RestoreOptions {
  /** restore into this directory instead of the live paths */
  target?: string;
  /** verify the backup first (default true) */
  verify?: boolean;
  signal?: AbortSignal;
  onProgress?: ProgressFn;
  lockWaitMs?: number;
  /** called after verification, before anything is changed; return false to cancel */
  confirm?: (plan: RestorePlan) => Promise<boolean>;
  /** age identities for encrypted backups */
  identities?: Identity[];
}

export interface RestorePlan {
  type: BackupType;
  id: string;
  database?: { backupId: string; to: string };
  storage?: { backupId: string; to: string };
  verified: boolean;
}

export interface RestoreResult extends RestorePlan {
  cancelled?: boolean;
  database?: RestorePlan['database'] & { savedCurrentAs?: string; integrity: string };
  storage?: RestorePlan['storage'] & { previousKeptAs?: string; entries: number; bytes: number; warnings: string[] };
  durationMs: number;
}

/** A name beside `base` that does not exist yet: `base`, `base-2`, `base-3`… */
async function freeName(base: string): Promise<string> {
  if (!(await exists(base))) return base;
  for (let n = 2; ; n++) if (!(await exists(`${base}-${n}`))) return `${base}-${n}`;
}

async function restoreDatabase(entry: BackupEntry, to: string, id: string, identities: Identity[] = []): Promise<NonNullable<RestoreResult['database']>> {
  const s = entry.sidecar!;
  let file = path.join(path.dirname(entry.sidecarPath!), artifactFiles(s)[0].file);
  await fsp.mkdir(path.dirname(to), { recursive: true });
  // an encrypted copy is decrypted and authenticated in full beside the target before anything changes
  const plain = s.encryption ? await freeName(path.join(path.dirname(to), `.${path.basename(to)}.restore-${id}.decrypted.tmp`)) : undefined;
  if (plain) {
    await decryptToFile(readParts(artifactFiles(s).map((p) => path.join(path.dirname(entry.sidecarPath!), p.file))), plain, { identities, subject: `database backup ${entry.id}`, info: s.encryption! });
    file = plain;
  }
  try {
    return await restoreDatabaseFile(entry, file, to, id);
  } finally {
    if (plain) await fsp.rm(plain, { force: true });
  }
}

async function restoreDatabaseFile(entry: BackupEntry, file: string, to: string, id: string): Promise<NonNullable<RestoreResult['database']>> {
  let savedCurrentAs: string | undefined;
  const existed = await exists(to);
  if (existed) {
    await checkSourceDatabase(to, 'current database').catch((err: BackupError) => {
      throw new BackupError('USAGE', `refusing to restore over ${to}: ${err.message}`, { hint: 'move that file away or use --target DIR' });
    });
    savedCurrentAs = await freeName(`${to}.pre-restore-${id}`);
    await copyDatabaseAside(to, savedCurrentAs);
  }
  const { integrity } = await restoreDatabaseInto(file, to);
  if (integrity !== 'ok') {
    throw new BackupError('FAILED', `restored database fails integrity_check: ${integrity.slice(0, 200)}`, {
      hint: savedCurrentAs ? `the previous database is at ${savedCurrentAs}` : undefined,
    });
  }
  // a live database keeps its owner and mode (the application may run as another user)
  if (!existed) await fsp.chmod(to, 0o600).catch(() => {});
  return { backupId: entry.id, to, savedCurrentAs, integrity };
}

/** Marker written before the directory swap so an interrupted swap can be rolled back by the next run. */
const swapMarker = (dest: string) => path.join(path.dirname(dest), `.${path.basename(dest)}.restore-swap.json`);

/** Puts the previous tree back when a restore died between its two renames. */
export async function recoverInterruptedSwap(dest: string): Promise<string | undefined> {
  const marker = swapMarker(dest);
  let state: { dest: string; previous: string };
  try {
    state = JSON.parse(await fsp.readFile(marker, 'utf8'));
  } catch {
    return undefined;
  }
  if (!(await exists(dest)) && (await exists(state.previous))) {
    await fsp.rename(state.previous, dest);
    await fsyncDir(path.dirname(dest));
  }
  await fsp.rm(marker, { force: true });
  return state.previous;
}

/**
 * Staging directories and half-written swap markers of a restore that was killed. Only ever called
 * under the backup-directory lock, after an interrupted swap was rolled back.
 */
async function removeRestoreLeftovers(dest: string): Promise<void> {
  const parent = path.dirname(dest);
  const name = path.basename(dest);
  for (const n of await fsp.readdir(parent).catch(() => [] as string[])) {
    const staging = n.startsWith(`.${name}.restore-`) && n.endsWith('.tmp');
    const markerTemp = n.startsWith(`.tmp-.${name}.restore-swap.json`);
    if (staging || markerTemp) await fsp.rm(path.join(parent, n), { recursive: true, force: true });
  }
}

async function restoreStorage(entry: BackupEntry, linkOrDest: string, id: string, opts: RestoreOptions): Promise<NonNullable<RestoreResult['storage']>> {
  const s = entry.sidecar!;
  // a storage path that is a symlink (to a mounted volume) stays a symlink: the swap happens where it leads
  const dest = (await fsp.lstat(linkOrDest).catch(() => undefined))?.isSymbolicLink() ? await fsp.realpath(linkOrDest) : linkOrDest;
  const dir = path.dirname(entry.sidecarPath!);
  const parent = path.dirname(dest);
  await fsp.mkdir(parent, { recursive: true });
  await recoverInterruptedSwap(dest);
  await removeRestoreLeftovers(dest);
  const destStat = await fsp.lstat(dest).catch(() => undefined);
  if (destStat && !destStat.isDirectory()) throw new BackupError('USAGE', `storage path is not a directory: ${dest}`);

  // unpack beside the destination (same filesystem, so the swap is two renames)
  const staging = path.join(parent, `.${path.basename(dest)}.restore-${id}.tmp`);
  await fsp.rm(staging, { recursive: true, force: true });
  const codec = s.compression ? getCodec(s.compression) : codecForFile(s.backup_path ?? '');
  if (!codec) throw new BackupError('DAMAGED', `unknown compression '${s.compression}' in ${entry.sidecarPath}`);
  await codec.checkAvailable();
  const free = await freeSpace(parent);
  const room = Math.max(0, free - 64 * 1024 * 1024);
  const declared = s.content_bytes;
  if (declared !== undefined && declared > room) {
    throw new BackupError('NO_SPACE', `not enough free space at ${parent} to unpack the backup: it holds ${formatBytes(declared)}, ${formatBytes(free)} is free`, {
      hint: 'free some space, or restore elsewhere with --target DIR',
    });
  }
  // our archives say how much they hold: one that unpacks to more is damaged or hostile (a gzip bomb);
  // any archive stops before it would fill the disk
  const maxBytes = declared !== undefined ? Math.min(room, declared + 1024 * 1024) : room;
  const files = artifactFiles(s).map((p) => path.join(dir, p.file));
  let extracted;
  try {
    const input = readParts(files);
    const decrypt = s.encryption ? decryptStage({ identities: opts.identities ?? [], subject: `storage backup ${entry.id}`, info: s.encryption }) : undefined;
    const plain = decrypt ? input.pipe(decrypt) : input;
    if (decrypt) input.on('error', (e) => decrypt.destroy(e));
    const tarStream = plain.pipe(codec.decompressor());
    plain.on('error', (e) => tarStream.destroy(e));
    extracted = await extractArchive(tarStream as unknown as import('node:stream').Readable, staging, {
      maxBytes,
      signal: opts.signal,
      onEntry: (_name, bytes) => opts.onProgress?.({ phase: 'restore', subject: entry.id, bytes }),
    });
    if (decrypt) {
      // the last chunk authenticates the whole payload: nothing is swapped in before it has
      decrypt.unpipe();
      decrypt.resume();
      await finished(decrypt);
      const problem = plaintextProblem(decrypt, s.encryption!);
      if (problem) throw new BackupError('DAMAGED', `storage backup ${entry.id}: ${problem}`);
    }
    if (s.entry_count !== undefined && extracted.entries !== s.entry_count) {
      throw new BackupError('DAMAGED', `archive unpacked ${extracted.entries} entries, metadata says ${s.entry_count}`);
    }
  } catch (err) {
    await fsp.rm(staging, { recursive: true, force: true });
    if (err instanceof BackupError && maxBytes === room && /archive bomb/.test(err.message)) {
      throw new BackupError('NO_SPACE', `unpacking the backup would need more than the ${formatBytes(free)} free at ${parent}: nothing was changed`, {
        hint: 'free some space, or restore elsewhere with --target DIR',
      });
    }
    throw toBackupError(err, 'storage restore');
  }
  // the archive holds one top directory (the storage directory's name); older tools may not
  const top = await fsp.readdir(staging);
  const newTree = top.length === 1 && (await fsp.lstat(path.join(staging, top[0]))).isDirectory() ? path.join(staging, top[0]) : staging;

  let previousKeptAs: string | undefined;
  if (destStat) {
    previousKeptAs = await freeName(`${dest}.pre-restore-${id}`);
    await writeFileAtomic(swapMarker(dest), JSON.stringify({ dest, previous: previousKeptAs, started_at: new Date().toISOString() }));
    await fsp.rename(dest, previousKeptAs);
  }
  try {
    if (newTree === staging) await fsp.rename(staging, dest);
    else {
      await fsp.rename(newTree, dest);
      await fsp.rm(staging, { recursive: true, force: true });
    }
  } catch (err) {
    if (previousKeptAs) await fsp.rename(previousKeptAs, dest).catch(() => {});
    await fsp.rm(staging, { recursive: true, force: true });
    throw toBackupError(err, 'storage restore');
  }
  await fsyncDir(parent);
  await fsp.rm(swapMarker(dest), { force: true });
  return { backupId: entry.id, to: dest, previousKeptAs, entries: extracted.entries, bytes: extracted.bytes, warnings: extracted.warnings };
}

async function component(backupDir: string, type: 'database' | 'storage', id: string | null | undefined): Promise<BackupEntry | undefined> {
  if (!id) return undefined;
  const e = (await listBackups(backupDir, { type })).find((x) => x.id === id);
  if (!e) throw new BackupError('DAMAGED', `${type} component ${id} of the full backup is missing`);
  return e;
}

/** Restores under the lock (so rotation cannot remove the backup being read). */
export async function restoreBackup(cfg: Config, ref: string, opts: RestoreOptions = {}): Promise<RestoreResult> {
  const started = Date.now();
  const entry = await findBackup(cfg.backupDir, ref);
  if (!entry) throw new BackupError('USAGE', `no backup '${ref}' in ${cfg.backupDir}`, { hint: 'run vertex-backup list to see the ids' });
  const lock = await acquireLock(cfg.backupDir, `restore ${entry.id}`, { waitMs: opts.lockWaitMs, signal: opts.signal });
  try {
    const verify = opts.verify !== false;
    if (verify) {
      const v = await verifyEntry(cfg.backupDir, entry, { signal: opts.signal, onProgress: opts.onProgress, identities: opts.identities });
      if (!v.ok) {
        throw new BackupError('DAMAGED', `${entry.type} backup ${entry.id} failed verification: ${v.problems.join('; ')}`, {
          hint: 'restore another backup, or pass --no-verify to restore it anyway',
        });
      }
    } else if (!entry.sidecar) {
      throw new BackupError('DAMAGED', `${entry.type} backup ${entry.id} is ${entry.status}: ${entry.reason ?? 'no metadata'}`);
    }
    const dbEntry = entry.type === 'database' ? entry : entry.type === 'full' ? await component(cfg.backupDir, 'database', entry.sidecar?.database) : undefined;
    const stEntry = entry.type === 'storage' ? entry : entry.type === 'full' ? await component(cfg.backupDir, 'storage', entry.sidecar?.storage) : undefined;
    const dbTo = opts.target ? path.join(path.resolve(opts.target), path.basename(cfg.dbPath)) : cfg.dbPath;
    const stTo = opts.target ? path.join(path.resolve(opts.target), path.basename(cfg.storagePath)) : cfg.storagePath;
    const plan: RestorePlan = {
      type: entry.type,
      id: entry.id,
      database: dbEntry && { backupId: dbEntry.id, to: dbTo },
      storage: stEntry && { backupId: stEntry.id, to: stTo },
      verified: verify,
    };
    for (const e of [dbEntry, stEntry]) {
      if (e?.sidecar?.encryption && !opts.identities?.length) throw needIdentity({ subject: `${e.type} backup ${e.id}`, info: e.sidecar.encryption });
    }
    if (opts.confirm && !(await opts.confirm(plan))) return { ...plan, database: undefined, storage: undefined, cancelled: true, durationMs: Date.now() - started };
    opts.signal?.throwIfAborted();
    // database first: it is small and quick, and the application can start against it
    const database = dbEntry ? await restoreDatabase(dbEntry, dbTo, entry.id, opts.identities) : undefined;
    opts.signal?.throwIfAborted();
    const storage = stEntry ? await restoreStorage(stEntry, stTo, entry.id, opts) : undefined;
    return { ...plan, database, storage, durationMs: Date.now() - started };
  } finally {
    lock.release();
  }
}
