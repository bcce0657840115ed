import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { pinsOf } from '../catalog/chain.js';
import type { BackupType } from '../catalog/sidecar.js';
import { BackupError } from '../errors.js';
import { type Remote, readSmall } from '../remote/remote.js';
import { type RetryingRemote, retrying } from '../remote/retry.js';
import { uploadEncrypted } from './remote-encryption.js';
import { putSealedSidecar, sealedSidecarState } from './sealed-fields.js';
import { type FileRef, type TransferOptions, type UploadResult, dataFiles, parseSidecarBytes, sidecarRel } from './transfer.js';

/**
 * The upload side of a transfer: plain files as they are, or through remote-encryption.ts for an
 * encrypting remote. It sits above both so neither imports the other (no circle of files).
 */

function addUp(into: UploadResult, sub: UploadResult): UploadResult {
  into.uploaded.push(...sub.uploaded);
  into.skipped.push(...sub.skipped);
  into.bytes += sub.bytes;
  return into;
}

/** Uploads one file unless the remote already has it with the same size (and checksum where known). */
export async function uploadFile(remote: RetryingRemote, backupDir: string, f: FileRef, options: TransferOptions, force = false): Promise<boolean> {
  const have = force ? null : await remote.stat(f.rel);
  if (have && have.size === f.size && (!have.checksum || !f.checksum || have.checksum === f.checksum)) {
    options.onEvent?.({ kind: 'skip', rel: f.rel, size: f.size });
    return false;
  }
  const local = path.join(backupDir, ...f.rel.split('/'));
  const started = Date.now();
  options.onEvent?.({ kind: 'start', rel: f.rel, size: f.size, reportsProgress: remote.reportsProgress });
  const onProgress = options.onEvent ? (bytes: number) => options.onEvent?.({ kind: 'progress', rel: f.rel, bytes, size: f.size }) : undefined;
  await remote.put(f.rel, local, { signal: options.signal, checksum: f.checksum, onProgress });
  options.onEvent?.({ kind: 'upload', rel: f.rel, size: f.size, ms: Date.now() - started });
  return true;
}

/** 'same': the remote holds this very backup; 'other': a different backup under the same name; 'none'. */
async function remoteSidecarState(remote: RetryingRemote, rel: string, localBytes: Buffer): Promise<'same' | 'other' | 'none'> {
  const st = await remote.stat(rel);
  if (!st) return 'none';
  if (st.size !== localBytes.length) return 'other';
  const bytes = await remote.attempt(rel, (raw) => readSmall(raw, rel));
  return bytes.equals(localBytes) ? 'same' : 'other';
}

/**
 * Uploads the backup whose sidecar is `<backupDir>/<type>/<prefix><id>.json`, then its sidecar. A full
 * backup uploads its components (each committed by its own sidecar) before its own sidecar.
 */
export async function uploadBackup(remote: Remote, backupDir: string, type: BackupType, id: string, options: TransferOptions = {}): Promise<UploadResult> {
  remote = retrying(remote, options);
  const result: UploadResult = { uploaded: [], skipped: [], bytes: 0 };
  const rel = sidecarRel(type, id);
  if (options.checked?.has(`${type}:${id}`)) return result;
  const localSidecar = path.join(backupDir, ...rel.split('/'));
  const bytes = await fsp.readFile(localSidecar);
  const sidecar = parseSidecarBytes(bytes, type, id, localSidecar);
  if (type !== 'full' && options.encryptTo?.length && !sidecar.encryption) {
    // an incremental backup (storage chain or page delta): its chain first, each encrypted and committed on its own
    for (const rid of pinsOf({ id, references: sidecar.references })) addUp(result, await uploadBackup(remote, backupDir, type, rid, options));
    addUp(result, await uploadEncrypted(remote, backupDir, type, id, sidecar, options.encryptTo, options));
    options.checked?.add(`${type}:${id}`);
    return result;
  }
  // an encrypting remote gets every sidecar sealed, a full backup's and an already encrypted one's too
  const sealTo = options.encryptTo?.length ? options.encryptTo : undefined;
  // files are checked even when the remote sidecar is current: a part lost on the remote gets re-sent
  const state = sealTo
    ? await sealedSidecarState(remote as RetryingRemote, rel, sidecar, bytes, sealTo)
    : await remoteSidecarState(remote as RetryingRemote, rel, bytes);
  const committed = state === 'same';
  // another backup under the same name (local backups lost, then a new one in the same second): its
  // files may have the same sizes, so sizes prove nothing and everything is sent again
  const force = state === 'other';
  if (type === 'full') {
    for (const t of ['database', 'storage'] as const) {
      const cid = sidecar[t];
      if (!cid) continue;
      addUp(result, await uploadBackup(remote, backupDir, t, cid, options));
    }
  } else {
    // an incremental storage backup's chain goes first, each backup committed by its own sidecar, so the
    // remote never lists a backup whose archives are not all there (catalog/chain.ts); a database page
    // delta's states below it the same way (catalog/page-chain.ts): a chain stays within its type
    for (const rid of pinsOf({ id, references: sidecar.references })) {
      addUp(result, await uploadBackup(remote, backupDir, type, rid, options));
    }
    for (const f of dataFiles(type, sidecar)) {
      const st = await fsp.stat(path.join(backupDir, ...f.rel.split('/'))).catch(() => null);
      if (!st || st.size !== f.size) {
        throw new BackupError(
          'DAMAGED',
          `local backup ${type} ${id} is incomplete: ${f.rel} ${st ? `is ${st.size} bytes, metadata says ${f.size}` : 'is missing'}`,
        );
      }
      if (await uploadFile(remote as RetryingRemote, backupDir, f, options, force)) {
        result.uploaded.push(f.rel);
        result.bytes += f.size;
      } else result.skipped.push(f.rel);
    }
  }
  if (committed) {
    result.skipped.push(rel);
    options.checked?.add(`${type}:${id}`);
    return result;
  }
  // the commit marker goes last: a reader never sees a remote sidecar whose files are not all there
  const started = Date.now();
  const size = sealTo ? await putSealedSidecar(remote as RetryingRemote, localSidecar, rel, sidecar, sealTo, options.signal) : bytes.length;
  if (!sealTo) await remote.put(rel, localSidecar, { signal: options.signal });
  options.onEvent?.({ kind: 'upload', rel, size, ms: Date.now() - started });
  result.uploaded.push(rel);
  result.bytes += size;
  options.checked?.add(`${type}:${id}`);
  return result;
}
