import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { artifactFiles } from '../catalog/sidecar.js';
import { TYPE_DIR } from '../catalog/names.js';
import type { BackupType, Sidecar } from '../catalog/sidecar.js';
import { PartWriter, readParts } from '../archive/parts.js';
import { FILE_MODE } from '../fsutil.js';
import type { RemotesConfig } from '../remote/config.js';
import type { Remote } from '../remote/remote.js';
import { retrying } from '../remote/retry.js';
import { pinsOf } from '../catalog/chain.js';
import { readRemoteSidecar, sidecarRel, type TransferOptions, type UploadResult, uploadBackup, uploadFile } from '../remote/transfer.js';
import { AGE_EXTENSION, encryptStage } from './age-artifact.js';
import type { Recipient } from './age-keys.js';
import { recipientsFromList } from './age-settings.js';

/**
 * Per-remote encryption: `"encrypt": {"recipients": ["age1…"]}` in a remote's definition. The remote
 * then holds `….age` files and sidecars that describe them (ciphertext size and checksum, plus the
 * plaintext's), so every remote reader — list, verify --remote, restore --from — works unchanged.
 */
export function remoteRecipients(remotes: RemotesConfig, nameOrUrl: string): Recipient[] | undefined {
  const def = remotes.remotes.find((r) => r.name === nameOrUrl);
  const enc = def?.options.encrypt;
  if (enc === undefined) return undefined;
  const where = `remote "${nameOrUrl}"${remotes.file ? ` in ${remotes.file}` : ''}: encrypt`;
  return recipientsFromList((enc as { recipients?: unknown } | null)?.recipients, where);
}

/** Is the remote copy this local backup, already encrypted? (A random file key makes bytes differ each time.) */
async function remoteHasIt(remote: Remote, type: BackupType, id: string, local: Sidecar, options: TransferOptions): Promise<string | undefined> {
  const rs = await readRemoteSidecar(remote, type, id, options).catch(() => undefined);
  const e = rs?.sidecar.encryption;
  if (!rs || !e || e.plaintext_checksum !== local.checksum || e.plaintext_size !== local.file_size || !rs.sidecar.backup_path) return undefined;
  const rel = `${TYPE_DIR[type]}/${rs.sidecar.backup_path}`;
  const st = await retrying(remote, options).stat(rel);
  return st && st.size === rs.sidecar.file_size ? rel : undefined;
}

/**
 * Uploads a plaintext local backup to an encrypting remote: the artifact (all its parts, as one
 * stream) is encrypted to a temporary file beside it, uploaded as `….age`, then the sidecar that
 * describes it goes last, the remote commit marker as always.
 */
export async function uploadEncrypted(remote: Remote, backupDir: string, type: BackupType, id: string, local: Sidecar, recipients: Recipient[], options: TransferOptions): Promise<UploadResult> {
  const scRel = sidecarRel(type, id);
  const result: UploadResult = { uploaded: [], skipped: [], bytes: 0 };
  // an incremental storage backup: its chain first (each encrypted and committed on its own), then its
  // manifest, which stays plaintext like the local one (see README, incremental storage backups)
  for (const rid of pinsOf({ id, references: local.references })) {
    const sub = await uploadBackup(remote, backupDir, 'storage', rid, options);
    result.uploaded.push(...sub.uploaded);
    result.skipped.push(...sub.skipped);
    result.bytes += sub.bytes;
  }
  if (local.manifest) {
    const m = { rel: `${TYPE_DIR[type]}/${local.manifest.file}`, size: local.manifest.size, checksum: local.manifest.checksum };
    if (await uploadFile(retrying(remote, options), backupDir, m, options)) {
      result.uploaded.push(m.rel);
      result.bytes += m.size;
    } else result.skipped.push(m.rel);
  }
  const done = await remoteHasIt(remote, type, id, local, options);
  if (done) {
    options.onEvent?.({ kind: 'skip', rel: done, size: 0 });
    result.skipped.push(done, scRel);
    return result;
  }
  const dir = path.join(backupDir, TYPE_DIR[type]);
  const name = path.basename(local.backup_path!) + AGE_EXTENSION;
  const rel = `${TYPE_DIR[type]}/${name}`;
  // a temp name (`….tmp`) the catalog ignores and the next create cleans up if we die here
  const tmpName = `${name}.upload.tmp`;
  const writer = new PartWriter(dir, tmpName);
  const stage = await encryptStage(recipients);
  const tmpSidecar = path.join(dir, `${path.basename(scRel)}.upload.tmp`);
  const tmp = path.join(dir, tmpName);
  try {
    const { pipeline } = await import('node:stream/promises');
    await pipeline(readParts(artifactFiles(local).map((p) => path.join(dir, p.file))), stage.stream, writer, { signal: options.signal });
    const written = await writer.commit();
    const info = stage.info();
    const started = Date.now();
    options.onEvent?.({ kind: 'start', rel, size: written.size, reportsProgress: remote.reportsProgress });
    const onProgress = options.onEvent ? (bytes: number) => options.onEvent?.({ kind: 'progress', rel, bytes, size: written.size }) : undefined;
    await retrying(remote, options).put(rel, tmp, { signal: options.signal, checksum: written.checksum, onProgress });
    options.onEvent?.({ kind: 'upload', rel, size: written.size, ms: Date.now() - started });
    const remoteSidecar: Sidecar = { ...local, backup_path: name, file_size: written.size, checksum: written.checksum, parts: undefined, encryption: { ...info, plaintext_checksum: local.checksum } };
    const bytes = Buffer.from(`${JSON.stringify(remoteSidecar, null, 2)}\n`);
    await fsp.writeFile(tmpSidecar, bytes, { mode: FILE_MODE });
    await retrying(remote, options).put(scRel, tmpSidecar, { signal: options.signal });
    options.onEvent?.({ kind: 'upload', rel: scRel, size: bytes.length, ms: 0 });
    result.uploaded.push(rel, scRel);
    result.bytes += written.size + bytes.length;
    return result;
  } finally {
    await writer.abort();
    await fsp.rm(tmp, { force: true });
    await fsp.rm(tmpSidecar, { force: true });
  }
}
