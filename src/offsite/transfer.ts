import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { checkParts, discard, hashParts, localPart } from '../archive/parts.js';
import { type BackupEntry, type StoredFile, judgeBackups } from '../catalog/judge.js';
import { pinsOf } from '../catalog/chain.js';
import { PREFIX, TYPE_DIR } from '../catalog/names.js';
import { type BackupType, type Sidecar, artifactFiles, parseSidecar } from '../catalog/sidecar.js';
import type { Recipient } from '../crypto/age-keys.js';
import { BackupError } from '../errors.js';
import { exclusiveWriteStream, ensureDir, fsyncDir, fsyncFile, tempNameBeside, writeFileAtomic } from '../fsutil.js';
import { type Remote, RemoteError, readSmall } from '../remote/remote.js';
import { type RetryOptions, type RetryingRemote, retrying } from '../remote/retry.js';

/**
 * Moving one backup between the local directory and a remote. The remote layout mirrors the local one
 * (`database/db_backup_<id>.db`, `full/full_backup_<id>.json`, …), and the sidecar is the commit marker on
 * the remote too: it is uploaded only after every file it names is there with the right size.
 */

export interface FileRef {
  rel: string; // relative to the backup directory / remote root, '/'-separated
  size: number;
  checksum?: string;
}

export type TransferEvent =
  | { kind: 'start'; rel: string; size: number; reportsProgress: boolean }
  | { kind: 'progress'; rel: string; bytes: number; size: number }
  | { kind: 'upload'; rel: string; size: number; ms: number }
  | { kind: 'skip'; rel: string; size: number }
  | { kind: 'download'; rel: string; size: number; ms: number }
  | { kind: 'retry'; rel: string; attempt: number; error: string };

export interface TransferOptions extends RetryOptions {
  signal?: AbortSignal;
  onEvent?: (e: TransferEvent) => void;
  /** the remote encrypts: upload plaintext local backups as `….age` to these recipients */
  encryptTo?: Recipient[];
  /**
   * backups (`type:id`) already sent or found complete in this run: a chain's lower links are walked
   * once, not once per backup above them (a day of database page deltas is thousands of links)
   */
  checked?: Set<string>;
}

export function sidecarRel(type: BackupType, id: string): string {
  return `${TYPE_DIR[type]}/${PREFIX[type]}${id}.json`;
}

/** The files of a (non-full) backup's artifact, as paths relative to the backup root. */
export function artifactRefs(type: BackupType, sidecar: Sidecar): FileRef[] {
  return artifactFiles(sidecar).map((p) => ({ rel: `${TYPE_DIR[type]}/${p.file}`, size: p.size, checksum: p.checksum || undefined }));
}

/** The data files a (non-full) sidecar names, as paths relative to the backup root. */
export function dataFiles(type: BackupType, sidecar: Sidecar): FileRef[] {
  const files = artifactRefs(type, sidecar);
  // incremental storage backups: the manifest travels with its archive
  if (sidecar.manifest) files.push({ rel: `${TYPE_DIR[type]}/${sidecar.manifest.file}`, size: sidecar.manifest.size, checksum: sidecar.manifest.checksum });
  return files;
}

export function parseSidecarBytes(bytes: Buffer | string, type: BackupType, id: string, where: string): Sidecar {
  const { sidecar, error } = parseSidecar(bytes.toString(), type, id);
  if (!sidecar) throw new BackupError('DAMAGED', `${where}: ${error}`);
  return sidecar;
}

export interface UploadResult {
  uploaded: string[];
  skipped: string[];
  bytes: number;
}

/**
 * Streams one remote file through the shared part checks (archive/parts.ts) into what `sink` makes: a
 * download is hashed while it is written, a remote verify hashes without writing. A transfer cut off
 * midway starts over: the hash covers the whole file.
 */
export async function checkRemoteFile(
  remote: Remote,
  f: FileRef,
  options: TransferOptions = {},
  sink: () => Writable = discard,
): Promise<{ size: number; problem?: string }> {
  return retrying(remote, options).attempt(f.rel, async (raw) => {
    let problem: string | undefined;
    options.onEvent?.({ kind: 'start', rel: f.rel, size: f.size, reportsProgress: true });
    const got = hashParts([{ file: f.rel, size: f.size, checksum: f.checksum }], () => raw.read(f.rel, { signal: options.signal }), {
      onBytes: (bytes) => options.onEvent?.({ kind: 'progress', rel: f.rel, bytes, size: f.size }),
      onProblem: (p) => {
        problem = p;
      },
    });
    await pipeline(got.stream, sink(), { signal: options.signal });
    return { size: got.whole().size, problem };
  });
}

/** Downloads one file to `dest`, checking size and sha256 against the sidecar before the final rename. */
async function downloadFile(remote: RetryingRemote, f: FileRef, dest: string, options: TransferOptions): Promise<void> {
  await ensureDir(path.dirname(dest));
  const tmp = tempNameBeside(dest);
  const started = Date.now();
  let got: { problem?: string };
  try {
    got = await checkRemoteFile(remote, f, options, () => exclusiveWriteStream(tmp));
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  if (got.problem) {
    await fsp.rm(tmp, { force: true });
    throw new BackupError('DAMAGED', `remote ${remote.url}: ${got.problem}`);
  }
  await fsyncFile(tmp);
  await fsp.rename(tmp, dest);
  options.onEvent?.({ kind: 'download', rel: f.rel, size: f.size, ms: Date.now() - started });
}

/** Reads and validates a sidecar on the remote. */
export async function readRemoteSidecar(
  remote: Remote,
  type: BackupType,
  id: string,
  options: TransferOptions = {},
): Promise<{ rel: string; bytes: Buffer; sidecar: Sidecar }> {
  const rel = sidecarRel(type, id);
  let bytes: Buffer;
  try {
    bytes = await retrying(remote, options).attempt(rel, (raw) => readSmall(raw, rel));
  } catch (err) {
    if (err instanceof RemoteError && err.kind === 'missing') {
      throw new BackupError('USAGE', `no ${type} backup ${id} on ${remote.url}`, { hint: 'list what the remote holds', remedy: 'remote-list' });
    }
    throw err;
  }
  return { rel, bytes, sidecar: parseSidecarBytes(bytes, type, id, `${remote.url}/${rel}`) };
}

/**
 * Downloads a backup into `destDir` (laid out like a backup directory) and verifies every file against
 * its sidecar while writing; the sidecar is written last. Returns the local sidecar path, ready for the
 * normal restore.
 */
export async function downloadBackup(remote: Remote, type: BackupType, id: string, destDir: string, options: TransferOptions = {}): Promise<string> {
  const r = retrying(remote, options);
  const { rel, bytes, sidecar } = await readRemoteSidecar(r, type, id, options);
  if (type === 'full') {
    for (const t of ['database', 'storage'] as const) {
      const cid = sidecar[t];
      if (cid) await downloadBackup(r, t, cid, destDir, options);
    }
  } else {
    for (const rid of pinsOf({ id, references: sidecar.references })) {
      if (!(await fsp.stat(path.join(destDir, ...sidecarRel(type, rid).split('/'))).catch(() => null))) await downloadBackup(r, type, rid, destDir, options);
    }
    for (const f of dataFiles(type, sidecar)) await downloadFile(r, f, path.join(destDir, ...f.rel.split('/')), options);
    await verifyWhole(destDir, type, sidecar);
  }
  const local = path.join(destDir, ...rel.split('/'));
  await ensureDir(path.dirname(local));
  await writeFileAtomic(local, bytes);
  await fsyncDir(path.dirname(local));
  return local;
}

/** A split artifact's parts each matched; the whole checksum covers their order too. */
async function verifyWhole(destDir: string, type: BackupType, sidecar: Sidecar): Promise<void> {
  if (!sidecar.parts?.length || !sidecar.checksum) return;
  const whole = await checkParts(artifactFiles(sidecar), localPart(path.join(destDir, TYPE_DIR[type])));
  if (whole.checksum !== sidecar.checksum) {
    throw new BackupError('DAMAGED', `${type} backup ${sidecar.id}: the parts do not add up to the archive's checksum`);
  }
}

/** A backup on a remote: judged by the catalog like a local one; its files are remote paths. */
export type RemoteBackup = BackupEntry;

/**
 * What the remote holds, newest first, judged by the catalog like the local listing: a sidecar whose
 * files are all present with the right sizes is `ok`; files without a sidecar are `incomplete` (an
 * interrupted sync).
 */
export async function listRemoteBackups(remote: Remote, options: TransferOptions & { type?: BackupType } = {}): Promise<RemoteBackup[]> {
  const r = retrying(remote, options);
  const files: StoredFile[] = [];
  for (const e of await r.list('')) {
    const [dir, name, ...rest] = e.path.split('/');
    if (dir && name && !rest.length) files.push({ dir, name, size: e.size, ref: e.path });
  }
  return judgeBackups(
    {
      files,
      readSidecar: async (f, type, id) => {
        try {
          return { sidecar: parseSidecarBytes(await r.attempt(f.ref, (raw) => readSmall(raw, f.ref)), type, id, f.ref) };
        } catch (err) {
          return { error: (err as Error).message };
        }
      },
      interrupted: 'no metadata (interrupted upload)',
    },
    options.type,
  );
}
