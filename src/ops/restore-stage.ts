import { constants as fsConstants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { extractArchive } from '../archive/extract.js';
import { artifactCodec, openArtifact } from '../archive/open-artifact.js';
import { readParts } from '../archive/parts.js';
import { type ChainArchive, extractChain } from '../archive/restore-chain.js';
import { manifestChain } from '../catalog/chain.js';
import { type BackupEntry, componentLookup } from '../catalog/local-store.js';
import { artifactFiles, type Sidecar } from '../catalog/sidecar.js';
import { decryptToFile } from '../crypto/age-artifact.js';
import type { Identity } from '../crypto/age-keys.js';
import { BackupError, toBackupError } from '../errors.js';
import { exists, freeSpace } from '../fsutil.js';
import { formatBytes } from '../human.js';
import { checkDatabaseFile, checkSourceDatabase, copyDatabaseAside } from '../sources/sqlite.js';
import { faultPoint } from './fault-point.js';
import { archivePath, manifestFileOf } from './file-manifest.js';
import type { ProgressFn } from './progress.js';
import { isMountPoint, type RestoreJournal, type StorageSwap, writeJournal } from './restore-journal.js';

// the stage phase of a restore: everything that can fail, done while nothing live changes

export interface StageOptions {
  signal?: AbortSignal;
  onProgress?: ProgressFn;
  include?: string[];
  identities?: Identity[];
}

/** A name beside `base` that does not exist yet: `base`, `base-2`, `base-3`… */
export async function freeName(base: string): Promise<string> {
  if (!(await exists(base))) return base;
  for (let n = 2; ; n++) if (!(await exists(`${base}-${n}`))) return `${base}-${n}`;
}

/** Unique per run: two restores (or a killed one and the next) never share a staging name. */
export const runTag = () => `${process.pid}-${randomBytes(3).toString('hex')}`;

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

export interface StagedDatabase {
  /** the SQLite file to restore from: the backup itself, or its decrypted copy (journal.decrypted) */
  file: string;
  existed: boolean;
}

/**
 * The database backup made ready: an encrypted copy decrypted and authenticated in full (0600, beside
 * the target), checked when the verification did not read it, and the current database found fit to
 * be replaced. The decrypted copy is named in the journal before it is written, for the cleanup.
 */
export async function stageDatabase(
  entry: BackupEntry,
  dbTo: string,
  verified: boolean,
  identities: Identity[] | undefined,
  journal: RestoreJournal,
  stateDir: string,
): Promise<StagedDatabase> {
  let file = dbFileOf(entry);
  await fsp.mkdir(path.dirname(dbTo), { recursive: true });
  const enc = entry.sidecar?.encryption;
  if (enc) {
    const decrypted = path.join(path.dirname(dbTo), `.${path.basename(dbTo)}.restore-${runTag()}.decrypted.tmp`);
    journal.decrypted = decrypted;
    await writeJournal(stateDir, journal);
    const parts = artifactFiles(entry.sidecar!).map((p) => path.join(path.dirname(entry.sidecarPath!), p.file));
    await decryptToFile(readParts(parts), decrypted, { identities: identities ?? [], subject: `database backup ${entry.id}`, info: enc });
    file = decrypted;
  }
  if (!verified || enc) checkDatabaseBackup(entry, file);
  const existed = await exists(dbTo);
  if (existed) {
    await checkSourceDatabase(dbTo, 'current database').catch((err: BackupError) => {
      throw new BackupError('USAGE', `refusing to restore over ${dbTo}: ${err.message}`, {
        hint: 'move that file away or restore into another directory',
        remedy: 'target-not-over',
      });
    });
  }
  return { file, existed };
}

/** The current database copied aside (online backup) under a free name; returns that name. */
export async function saveCurrentDatabase(dbTo: string, id: string, journal: RestoreJournal, stateDir: string): Promise<string> {
  const aside = await freeName(`${dbTo}.pre-restore-${id}`);
  const asideTemp = path.join(path.dirname(dbTo), `.${path.basename(dbTo)}.pre-restore-${runTag()}.tmp`);
  journal.database = { live: dbTo, asideTemp };
  await writeJournal(stateDir, journal);
  await copyDatabaseAside(dbTo, aside, asideTemp);
  return aside;
}

/** Where a restore will keep the current tree, for the plan shown before anything changes. */
export async function keptAsFor(linkOrDest: string, id: string): Promise<string | undefined> {
  const st = await fsp.stat(linkOrDest).catch(() => undefined);
  if (!st?.isDirectory()) return undefined;
  const dest = await fsp.realpath(linkOrDest);
  return (await isMountPoint(dest)) ? path.join(dest, `.pre-restore-${id}`) : `${dest}.pre-restore-${id}`;
}

export interface StagedStorage {
  swap: StorageSwap;
  entries: number;
  bytes: number;
  warnings: string[];
}

/**
 * How the tree will be swapped in. A plain directory: staged in a sibling, swapped by two renames. A
 * mount point (a Docker volume) cannot be renamed, nor a directory in a parent we cannot write: staged
 * in a directory inside it, swapped entry by entry, the old entries kept inside it too.
 */
async function planSwap(linkOrDest: string, id: string): Promise<{ swap: StorageSwap; exists: boolean }> {
  // a storage path that is a symlink (to a mounted volume) stays a symlink: the swap happens where it leads
  const dest = (await fsp.lstat(linkOrDest).catch(() => undefined))?.isSymbolicLink() ? await fsp.realpath(linkOrDest) : linkOrDest;
  const parent = path.dirname(dest);
  await fsp.mkdir(parent, { recursive: true });
  const destStat = await fsp.lstat(dest).catch(() => undefined);
  if (destStat && !destStat.isDirectory())
    throw new BackupError('USAGE', `storage path is not a directory: ${dest}`, {
      hint: 'set the storage path to the media directory, or restore into another directory',
      remedy: 'storage-path-or-target',
    });
  // the contents swap also serves a directory whose parent we may not write: /var/www/app owned by root,
  // its storage by www-data, and the restore run as www-data
  const parentWritable = await fsp.access(parent, fsConstants.W_OK | fsConstants.X_OK).then(
    () => true,
    () => false,
  );
  const mode = destStat && ((await isMountPoint(dest)) || !parentWritable) ? 'contents' : 'rename';
  const staging =
    mode === 'rename' ? path.join(parent, `.${path.basename(dest)}.restore-${id}-${runTag()}.tmp`) : path.join(dest, `.vertex-restore-${id}-${runTag()}.tmp`);
  return { swap: { dest, mode, staging }, exists: !!destStat };
}

interface Room {
  where: string;
  free: number;
  /** what may be unpacked: the free space less a margin */
  room: number;
  /** what the sidecar says the tree holds */
  declared?: number;
}

/** The free space where the tree is staged, refused up front when the backup says it holds more. */
async function roomToUnpack(s: Sidecar, swap: StorageSwap): Promise<Room> {
  const where = swap.mode === 'rename' ? path.dirname(swap.dest) : swap.dest;
  const free = await freeSpace(where);
  const room = Math.max(0, free - 64 * 1024 * 1024);
  const declared = s.manifest ? s.tree_bytes : s.content_bytes;
  if (declared !== undefined && declared > room) {
    throw new BackupError(
      'NO_SPACE',
      `not enough free space at ${where} to unpack the backup: it holds ${formatBytes(declared)}, ${formatBytes(free)} is free`,
      {
        hint: 'free some space, or restore into another directory',
        remedy: 'target-space',
      },
    );
  }
  return { where, free, room, declared };
}

/** Unpacks the storage backup into `staging` and validates it; nothing live changes. */
export async function stageStorage(
  entry: BackupEntry,
  linkOrDest: string,
  id: string,
  opts: StageOptions,
  journal: RestoreJournal,
  stateDir: string,
): Promise<StagedStorage> {
  const s = entry.sidecar!;
  const { swap, exists: destExists } = await planSwap(linkOrDest, id);
  journal.storage = swap;
  await writeJournal(stateDir, journal);

  const codec = artifactCodec(s);
  if (!codec) throw new BackupError('DAMAGED', `unknown compression '${s.compression}' in ${entry.sidecarPath}`);
  await codec.checkAvailable();
  const { where, free, room, declared } = await roomToUnpack(s, swap);
  // our archives say how much they hold: one that unpacks to more is damaged or hostile (a gzip bomb);
  // any archive stops before it would fill the disk
  const maxBytes = declared !== undefined ? Math.min(room, declared + 1024 * 1024) : room;
  let extracted: { entries: number; bytes: number; warnings: string[] };
  try {
    extracted = s.manifest ? await unpackChain(entry, swap.staging, room, opts) : await unpackArchive(entry, swap.staging, maxBytes, opts);
  } catch (err) {
    if (err instanceof BackupError && maxBytes === room && /archive bomb/.test(err.message)) {
      throw new BackupError('NO_SPACE', `unpacking the backup would need more than the ${formatBytes(free)} free at ${where}`, {
        hint: 'free some space, or restore into another directory',
        remedy: 'target-space',
      });
    }
    throw toBackupError(err, 'storage restore');
  }
  // the archive holds one top directory (the storage directory's name); older tools may not
  const top = await fsp.readdir(swap.staging);
  swap.newTree = top.length === 1 && (await fsp.lstat(path.join(swap.staging, top[0]))).isDirectory() ? path.join(swap.staging, top[0]) : swap.staging;
  if (destExists) swap.previous = await freeName(swap.mode === 'rename' ? `${swap.dest}.pre-restore-${id}` : path.join(swap.dest, `.pre-restore-${id}`));
  await writeJournal(stateDir, journal);
  return { swap, entries: extracted.entries, bytes: extracted.bytes, warnings: extracted.warnings };
}

/** Progress per unpacked entry, with totals (from the manifest or the sidecar) so a terminal shows percent and ETA as create does. */
function progressPerEntry(entry: BackupEntry, opts: StageOptions, total: () => { files?: number; bytes?: number } | undefined) {
  let unpacked = 0;
  let unpackedBytes = 0;
  return (_name: string, bytes: number): void => {
    if (++unpacked === 1) faultPoint('staging');
    unpackedBytes += bytes;
    const t = total();
    opts.onProgress?.({ phase: 'restore', subject: entry.id, bytes: unpackedBytes, totalBytes: t?.bytes, files: unpacked, totalFiles: t?.files });
  };
}

/** An incremental storage backup: the manifest says which archive holds each entry (archive/restore-chain.ts). */
async function unpackChain(entry: BackupEntry, staging: string, room: number, opts: StageOptions) {
  const s = entry.sidecar!;
  const lookup = componentLookup(path.dirname(path.dirname(entry.sidecarPath!)));
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
  let totals: { files: number; bytes: number } | undefined;
  return extractChain(manifests, (rid) => chain.get(rid), staging, {
    maxBytes: s.tree_bytes !== undefined ? Math.min(room, s.tree_bytes + 1024 * 1024) : room,
    signal: opts.signal,
    include: opts.include?.map((i) => archivePath(entry, i)),
    // encrypted archives: decrypted on the way, and each authenticated in full before the next one
    identities: opts.identities,
    onTotals: (entries, bytes) => {
      totals = { files: entries, bytes };
    },
    onEntry: progressPerEntry(entry, opts, () => totals),
  });
}

/** A storage backup in one archive (or its parts). */
async function unpackArchive(entry: BackupEntry, staging: string, maxBytes: number, opts: StageOptions) {
  const s = entry.sidecar!;
  if (opts.include?.length)
    throw new BackupError('USAGE', `storage backup ${entry.id} has no file manifest: --include needs one`, {
      hint: 'restore it whole into another directory',
      remedy: 'target-include',
    });
  const artifact = await openArtifact(path.dirname(entry.sidecarPath!), s, { identities: opts.identities, subject: `storage backup ${entry.id}` });
  const extracted = await extractArchive(artifact.stream, staging, {
    maxBytes,
    signal: opts.signal,
    onEntry: progressPerEntry(entry, opts, () => ({ bytes: s.content_bytes, files: s.entry_count })),
  });
  // the last chunk authenticates the whole payload: nothing is swapped in before it has
  await artifact.authenticate();
  if (s.entry_count !== undefined && extracted.entries !== s.entry_count) {
    throw new BackupError('DAMAGED', `archive unpacked ${extracted.entries} entries, metadata says ${s.entry_count}`);
  }
  return extracted;
}
