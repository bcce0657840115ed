import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { artifactFiles } from '../catalog/sidecar.js';
import { TYPE_DIR } from '../catalog/names.js';
import type { BackupType, EncryptionInfo, Sidecar } from '../catalog/sidecar.js';
import { PartWriter, readParts } from '../archive/parts.js';
import { writeFileAtomic, writeFresh } from '../fsutil.js';
import type { RemotesConfig } from '../remote/config.js';
import type { Remote } from '../remote/remote.js';
import { retrying } from '../remote/retry.js';
import { readRemoteSidecar, sidecarRel, type TransferOptions, type UploadResult } from './transfer.js';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AGE_EXTENSION, decryptToFile, encryptStage } from '../crypto/age-artifact.js';
import { describeRecipient, type Identity, type Recipient } from '../crypto/age-keys.js';
import { recipientsFromList } from '../crypto/age-settings.js';
import { isSealed, plaintextTag, sealSidecar, uploadTag } from './sealed-fields.js';

/**
 * Per-remote encryption: `"encrypt": {"recipients": ["age1…"]}` in a remote's definition. The remote
 * then holds `….age` files and sidecars that describe them (ciphertext size and checksum; everything
 * else sealed, see sealed-fields.ts), so list, verify --remote and restore --from work unchanged.
 */
export function remoteRecipients(remotes: RemotesConfig, nameOrUrl: string): Recipient[] | undefined {
  const def = remotes.remotes.find((r) => r.name === nameOrUrl);
  const enc = def?.options.encrypt;
  if (enc === undefined) return undefined;
  const where = `remote "${nameOrUrl}"${remotes.file ? ` in ${remotes.file}` : ''}: encrypt`;
  return recipientsFromList((enc as { recipients?: unknown } | null)?.recipients, where);
}

/**
 * Is this local file already on the remote, encrypted? A random file key makes the bytes differ each
 * time, so the remote sidecar's plaintext checksum says it (for the archive, and for an incremental
 * backup's file manifest beside it), and the object's size that it is whole.
 */
async function remoteHas(
  remote: Remote,
  type: BackupType,
  stored: { file?: string; size?: number; encryption?: EncryptionInfo } | undefined,
  plaintext: { checksum?: string; size?: number },
  recipients: string[],
  options: TransferOptions,
): Promise<string | undefined> {
  const e = stored?.encryption as (EncryptionInfo & { plaintext_tag?: string }) | undefined;
  // a sealed sidecar (sealed-fields.ts) shows the plaintext checksum only as a keyed tag
  const same =
    e &&
    plaintext.checksum &&
    (e.plaintext_tag ? e.plaintext_tag === plaintextTag(plaintext.checksum, e.recipients) : e.plaintext_checksum === plaintext.checksum);
  if (!stored?.file || !e || !same || (plaintext.size !== undefined && e.plaintext_size !== plaintext.size)) return undefined;
  // encrypted to the remote's former recipients: a chain whose lower links keep the old key does not
  // restore with the new one alone (issue 21 item 1), so the file is encrypted again
  if (!sameRecipients(e.recipients, recipients)) return undefined;
  const rel = `${TYPE_DIR[type]}/${stored.file}`;
  const st = await retrying(remote, options).stat(rel);
  return st && st.size === stored.size ? rel : undefined;
}

const sameRecipients = (a: string[] | undefined, b: string[]) => JSON.stringify([...(a ?? [])].sort()) === JSON.stringify([...b].sort());

/** What the remote's (possibly sealed) description of a file already there becomes: the plaintext checksum back, the tag gone. */
function withChecksum(e: EncryptionInfo | undefined, checksum: string | undefined): EncryptionInfo | undefined {
  if (!e) return e;
  const { plaintext_tag: _t, ...rest } = e as EncryptionInfo & { plaintext_tag?: string };
  return { ...rest, plaintext_checksum: checksum };
}

/** Encrypts the local file `name` of `dir` to a temp file, uploads it as `rel`; what was written. */
async function encryptAndUpload(remote: Remote, dir: string, name: string, rel: string, recipients: Recipient[], options: TransferOptions, src: Readable) {
  // a temp name (`….tmp`) the catalog ignores and the next create cleans up if we die here; unique,
  // since `sync` sends to several encrypting remotes at once from the same backup directory
  const tmpName = `${name}.${uploadTag()}.upload.tmp`;
  const writer = new PartWriter(dir, tmpName);
  const stage = await encryptStage(recipients);
  try {
    await pipeline(src, stage.stream, writer, { signal: options.signal });
    const written = await writer.commit();
    const started = Date.now();
    options.onEvent?.({ kind: 'start', rel, size: written.size, reportsProgress: remote.reportsProgress });
    const onProgress = options.onEvent ? (bytes: number) => options.onEvent?.({ kind: 'progress', rel, bytes, size: written.size }) : undefined;
    await retrying(remote, options).put(rel, path.join(dir, tmpName), { signal: options.signal, checksum: written.checksum, onProgress });
    options.onEvent?.({ kind: 'upload', rel, size: written.size, ms: Date.now() - started });
    return { ...written, info: stage.info() };
  } finally {
    await writer.abort();
    await fsp.rm(path.join(dir, tmpName), { force: true });
  }
}

/**
 * Uploads a plaintext local backup to an encrypting remote: the artifact (all its parts, as one
 * stream) is encrypted to a temporary file beside it, uploaded as `….age`, then the sidecar that
 * describes it goes last, the remote commit marker as always. An incremental storage backup's file
 * manifest is encrypted the same way (`….manifest.gz.age`): the remote sees no names, sizes or hashes.
 */
export async function uploadEncrypted(
  remote: Remote,
  backupDir: string,
  type: BackupType,
  id: string,
  local: Sidecar,
  recipients: Recipient[],
  options: TransferOptions,
): Promise<UploadResult> {
  const scRel = sidecarRel(type, id);
  // its chain, if any, was uploaded by the caller (upload.ts) first
  const result: UploadResult = { uploaded: [], skipped: [], bytes: 0 };
  const rs = await readRemoteSidecar(remote, type, id, options).catch(() => undefined);
  const to = recipients.map(describeRecipient);
  if (local.components) return uploadEncryptedComponents(remote, backupDir, type, local, recipients, options, rs?.sidecar, result);
  const doneArtifact = await remoteHas(
    remote,
    type,
    rs && { file: rs.sidecar.backup_path, size: rs.sidecar.file_size, encryption: rs.sidecar.encryption },
    { checksum: local.checksum, size: local.file_size },
    to,
    options,
  );
  const doneManifest = local.manifest ? await remoteHas(remote, type, rs?.sidecar.manifest, { checksum: local.manifest.checksum }, to, options) : undefined;
  // a sidecar uploaded before sealing (sealed-fields.ts), or sealed to former recipients, is replaced by a sealed one
  if (doneArtifact && (!local.manifest || doneManifest) && isSealed(rs?.sidecar) && sameRecipients(rs.sidecar.sealed.recipients, to)) {
    for (const rel of [doneArtifact, doneManifest]) if (rel) options.onEvent?.({ kind: 'skip', rel, size: 0 });
    result.skipped.push(...[doneArtifact, doneManifest].filter((x): x is string => !!x), scRel);
    return result;
  }
  const dir = path.join(backupDir, TYPE_DIR[type]);
  let manifest: Sidecar['manifest'];
  if (local.manifest) {
    if (doneManifest) {
      manifest = { ...rs!.sidecar.manifest!, encryption: withChecksum(rs!.sidecar.manifest!.encryption, local.manifest.checksum) };
      result.skipped.push(doneManifest);
    } else {
      const name = local.manifest.file + AGE_EXTENSION;
      const rel = `${TYPE_DIR[type]}/${name}`;
      const w = await encryptAndUpload(remote, dir, name, rel, recipients, options, createReadStream(path.join(dir, local.manifest.file)));
      manifest = {
        file: name,
        size: w.size,
        checksum: w.checksum,
        entries: local.manifest.entries,
        encryption: { ...w.info, plaintext_checksum: local.manifest.checksum },
      };
      result.uploaded.push(rel);
      result.bytes += w.size;
    }
  }
  let artifact: Pick<Sidecar, 'backup_path' | 'file_size' | 'checksum' | 'encryption'>;
  if (doneArtifact) {
    artifact = {
      backup_path: rs!.sidecar.backup_path,
      file_size: rs!.sidecar.file_size,
      checksum: rs!.sidecar.checksum,
      encryption: withChecksum(rs!.sidecar.encryption, local.checksum),
    };
    result.skipped.push(doneArtifact);
  } else {
    const name = path.basename(local.backup_path!) + AGE_EXTENSION;
    const rel = `${TYPE_DIR[type]}/${name}`;
    const w = await encryptAndUpload(remote, dir, name, rel, recipients, options, readParts(artifactFiles(local).map((p) => path.join(dir, p.file))));
    artifact = { backup_path: name, file_size: w.size, checksum: w.checksum, encryption: { ...w.info, plaintext_checksum: local.checksum } };
    result.uploaded.push(rel);
    result.bytes += w.size;
  }
  const tmpSidecar = path.join(dir, `${path.basename(scRel)}.${uploadTag()}.upload.tmp`);
  try {
    const remoteSidecar: Sidecar = { ...local, ...artifact, parts: undefined, manifest };
    const bytes = Buffer.from(`${JSON.stringify(await sealSidecar(remoteSidecar, recipients), null, 2)}\n`);
    await writeFresh(tmpSidecar, bytes);
    await retrying(remote, options).put(scRel, tmpSidecar, { signal: options.signal });
    options.onEvent?.({ kind: 'upload', rel: scRel, size: bytes.length, ms: 0 });
    result.uploaded.push(scRel);
    result.bytes += bytes.length;
    return result;
  } finally {
    await fsp.rm(tmpSidecar, { force: true });
  }
}

/**
 * A backup of sources (PostgreSQL dumps and globals, issue 23) names its files in `components`, not in
 * `backup_path`: each is encrypted on its own (`<file>.age`), or sent as it is when create --encrypt
 * already encrypted it, so the remote's sidecar describes them the way a locally encrypted one does.
 */
async function uploadEncryptedComponents(
  remote: Remote,
  backupDir: string,
  type: BackupType,
  local: Sidecar,
  recipients: Recipient[],
  options: TransferOptions,
  theirs: Sidecar | undefined,
  result: UploadResult,
): Promise<UploadResult> {
  const dir = path.join(backupDir, TYPE_DIR[type]);
  const to = recipients.map(describeRecipient);
  const r = retrying(remote, options);
  const components: NonNullable<Sidecar['components']> = [];
  let all = true;
  for (const c of local.components!) {
    if (c.encryption) {
      const rel = `${TYPE_DIR[type]}/${c.file}`;
      const have = await r.stat(rel);
      if (have && have.size === c.size && (!have.checksum || have.checksum === c.checksum)) result.skipped.push(rel);
      else {
        all = false;
        await r.put(rel, path.join(dir, c.file), { signal: options.signal, checksum: c.checksum });
        options.onEvent?.({ kind: 'upload', rel, size: c.size, ms: 0 });
        result.uploaded.push(rel);
        result.bytes += c.size;
      }
      components.push(c);
      continue;
    }
    const stored = theirs?.components?.find((x) => x.kind === c.kind && x.name === c.name && x.role === c.role);
    const done = await remoteHas(remote, type, stored, { checksum: c.checksum, size: c.size }, to, options);
    if (done && stored) {
      components.push({ ...c, file: stored.file, size: stored.size, checksum: stored.checksum, encryption: withChecksum(stored.encryption, c.checksum) });
      result.skipped.push(done);
      continue;
    }
    all = false;
    const name = c.file + AGE_EXTENSION;
    const rel = `${TYPE_DIR[type]}/${name}`;
    const w = await encryptAndUpload(remote, dir, name, rel, recipients, options, createReadStream(path.join(dir, c.file)));
    components.push({ ...c, file: name, size: w.size, checksum: w.checksum, encryption: { ...w.info, plaintext_checksum: c.checksum } });
    result.uploaded.push(rel);
    result.bytes += w.size;
  }
  const scRel = sidecarRel(type, local.id);
  if (all && isSealed(theirs) && sameRecipients(theirs.sealed.recipients, to)) {
    result.skipped.push(scRel);
    return result;
  }
  const tmpSidecar = path.join(dir, `${path.basename(scRel)}.${uploadTag()}.upload.tmp`);
  try {
    const bytes = Buffer.from(`${JSON.stringify(await sealSidecar({ ...local, components }, recipients), null, 2)}\n`);
    await writeFresh(tmpSidecar, bytes);
    await r.put(scRel, tmpSidecar, { signal: options.signal });
    options.onEvent?.({ kind: 'upload', rel: scRel, size: bytes.length, ms: 0 });
    result.uploaded.push(scRel);
    result.bytes += bytes.length;
    return result;
  } finally {
    await fsp.rm(tmpSidecar, { force: true });
  }
}

/**
 * After `restore --from` or `drill --from` downloaded a page delta of an encrypting remote into `dir`
 * (its chain with it): each encrypted link of the chain is decrypted beside its ciphertext (checked
 * against its plaintext size and checksum) and its sidecar rewritten to name the plaintext. A state is
 * rebuilt by reading pages at offsets (ops/pit.ts), which a stream of age cannot give. The copies live
 * in the download directory, which the command removes and the next one's healing removes if it died.
 */
export async function decryptFetchedPageChain(dir: string, identities: Identity[]): Promise<void> {
  const ddir = path.join(dir, TYPE_DIR.database);
  for (const name of await fsp.readdir(ddir).catch(() => [] as string[])) {
    if (!name.endsWith('.json')) continue;
    const scPath = path.join(ddir, name);
    const sc = JSON.parse(await fsp.readFile(scPath, 'utf8')) as Sidecar;
    const e = sc.encryption;
    if (!e || !sc.backup_path?.endsWith(AGE_EXTENSION) || sc.parts?.length) continue;
    const plain = path.basename(sc.backup_path).slice(0, -AGE_EXTENSION.length);
    await decryptToFile(createReadStream(path.join(ddir, path.basename(sc.backup_path))), path.join(ddir, plain), {
      identities,
      subject: `database backup ${sc.id}`,
      info: e,
    });
    await fsp.rm(path.join(ddir, path.basename(sc.backup_path)), { force: true });
    const { encryption: _e, ...rest } = sc;
    const next: Sidecar = { ...rest, backup_path: plain, file_size: e.plaintext_size, checksum: e.plaintext_checksum ?? '' };
    await writeFileAtomic(scPath, `${JSON.stringify(next, null, 2)}\n`);
  }
}
