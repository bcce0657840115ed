import { createHmac, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { BackupEntry } from '../catalog/judge.js';
import { BACKUP_TYPES, type EncryptionInfo, type Sidecar, parseSidecar } from '../catalog/sidecar.js';
import { TYPE_DIR } from '../catalog/names.js';
import { type Identity, type Recipient, describeRecipient } from '../crypto/age-keys.js';
import { createDecryptStream, createEncryptStream } from '../crypto/age-stream.js';
import { BackupError } from '../errors.js';
import { writeFileAtomic, writeFresh } from '../fsutil.js';
import { readSmall } from '../remote/remote.js';
import type { RetryingRemote } from '../remote/retry.js';

/**
 * Sidecars on an encrypting remote keep in plaintext only what judging, verifying and restoring the
 * ciphertext needs (ids, chain, the names, sizes and checksums of the `.age` files, the recipients); the
 * whole sidecar as the local tool reads it travels in `sealed`, age-encrypted to the remote's recipients:
 * warnings and skipped paths, notes, exclude patterns, the original path, table names and row counts,
 * file counts and tree sizes, plaintext checksums. `restore --from`, `drill --from` and `list --remote`
 * with an identity unseal it.
 */
export interface SealedField {
  format: 'age';
  recipients: string[];
  /** base64 of age(gzip(JSON of the whole sidecar)) */
  data: string;
}

/** What stays readable without a key: a whitelist, so a field a newer tool adds is sealed by default. */
const PUBLIC_KEYS = [
  'format',
  'tool',
  'id',
  'type',
  'timestamp',
  'created_at',
  'backup_path',
  'checksum',
  'file_size',
  'compression',
  'parts',
  'database',
  'storage',
  'status',
  'level',
  'base',
  'previous',
  'chain',
  'references',
] as const;

/**
 * A keyed stand-in for a plaintext checksum: sync compares it to tell whether a local file is already on
 * the remote, but it says nothing of the plaintext to whoever does not already hold it.
 */
export function plaintextTag(checksum: string, recipients: string[]): string {
  return createHmac('sha256', `vertex-backup sealed tag\n${[...recipients].sort().join('\n')}`)
    .update(checksum)
    .digest('hex');
}

/** The ciphertext's description: recipients and size (the ciphertext's size tells it anyway); the checksum only as a tag. */
function publicEncryption(e: EncryptionInfo): EncryptionInfo & { plaintext_tag?: string } {
  return {
    format: e.format,
    recipients: e.recipients,
    plaintext_size: e.plaintext_size,
    ...(e.plaintext_checksum ? { plaintext_tag: plaintextTag(e.plaintext_checksum, e.recipients) } : {}),
  };
}

/** The plaintext part of a remote sidecar. */
export function publicPart(s: Sidecar): Sidecar {
  const out: Record<string, unknown> = {};
  for (const k of PUBLIC_KEYS) if (s[k] !== undefined) out[k] = s[k];
  if (s.encryption) out.encryption = publicEncryption(s.encryption);
  if (s.manifest) {
    const { file, size, checksum, entries, encryption } = s.manifest;
    // entries is required by the schema; the count of changed records says no more than the manifest's size
    out.manifest = { file, size, checksum, entries, ...(encryption ? { encryption: publicEncryption(encryption) } : {}) };
  }
  if (s.components)
    out.components = s.components.map(({ info: _info, encryption, ...c }) => ({ ...c, ...(encryption ? { encryption: publicEncryption(encryption) } : {}) }));
  return out as Sidecar;
}

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The sidecar to upload to a remote that encrypts to `recipients`: the public part and the whole one sealed. */
export async function sealSidecar(s: Sidecar, recipients: Recipient[]): Promise<Sidecar & { sealed: SealedField }> {
  const enc = await createEncryptStream(recipients, { hashPlaintext: false });
  const done = collect(enc);
  Readable.from([gzipSync(Buffer.from(JSON.stringify(s)))]).pipe(enc);
  const data = (await done).toString('base64');
  return { ...publicPart(s), sealed: { format: 'age', recipients: recipients.map(describeRecipient), data } };
}

export const isSealed = (s: Sidecar | undefined): s is Sidecar & { sealed: SealedField } => {
  const f = (s as { sealed?: SealedField } | undefined)?.sealed;
  return !!f && typeof f === 'object' && typeof f.data === 'string';
};

/** The whole sidecar a sealed one holds; checked like any sidecar, and against the public part's id and type. */
export async function unsealSidecar(s: Sidecar, identities: Identity[]): Promise<Sidecar> {
  if (!isSealed(s)) return s;
  const subject = `the metadata of ${s.type} backup ${s.id}`;
  const dec = createDecryptStream(identities, { subject, knownRecipients: s.sealed.recipients, hashPlaintext: false });
  const done = collect(dec);
  Readable.from([Buffer.from(s.sealed.data, 'base64')]).pipe(dec);
  let text: string;
  try {
    text = gunzipSync(await done, { maxOutputLength: 64 << 20 }).toString('utf8');
  } catch (err) {
    if (err instanceof BackupError) throw err;
    throw new BackupError('DAMAGED', `${subject} cannot be unsealed: ${(err as Error).message}`);
  }
  const { sidecar, error } = parseSidecar(text, s.type, s.id);
  if (!sidecar) throw new BackupError('DAMAGED', `${subject}, sealed: ${error}`);
  // the files were fetched and checked by the plaintext part: the sealed one must say the same of them
  if (!samePublicPart(s, sidecar)) throw new BackupError('DAMAGED', `${subject}: the sealed metadata does not match the plaintext part`);
  return sidecar;
}

/** Whether the remote's sealed sidecar is the one this local sidecar would give (the random sealing aside). */
export function samePublicPart(remote: Sidecar, local: Sidecar): boolean {
  const { sealed: _s, ...rest } = remote as Sidecar & { sealed?: unknown };
  return isSealed(remote) && JSON.stringify(rest) === JSON.stringify(publicPart(local));
}

/** After a download into `dir` (a backup directory's layout): every sealed sidecar is replaced by the whole one. */
export async function unsealFetchedSidecars(dir: string, identities: Identity[]): Promise<void> {
  for (const type of BACKUP_TYPES) {
    const tdir = path.join(dir, TYPE_DIR[type]);
    for (const name of await fsp.readdir(tdir).catch(() => [] as string[])) {
      if (!name.endsWith('.json')) continue;
      const file = path.join(tdir, name);
      const sc = JSON.parse(await fsp.readFile(file, 'utf8')) as Sidecar;
      if (!isSealed(sc)) continue;
      await writeFileAtomic(file, `${JSON.stringify(await unsealSidecar(sc, identities), null, 2)}\n`);
    }
  }
}

/** A remote listing with each sealed sidecar opened (a sidecar that cannot be opened stays as it is, with the reason). */
export async function unsealListing(entries: BackupEntry[], identities: Identity[]): Promise<{ entries: BackupEntry[]; problems: string[] }> {
  const problems: string[] = [];
  const out: BackupEntry[] = [];
  for (const e of entries) {
    if (!isSealed(e.sidecar)) {
      out.push(e);
      continue;
    }
    try {
      const sidecar = await unsealSidecar(e.sidecar, identities);
      out.push({ ...e, sidecar, fileCount: sidecar.file_count ?? e.fileCount });
    } catch (err) {
      problems.push((err as Error).message);
      out.push(e);
    }
  }
  return { entries: out, problems };
}

/**
 * How the remote's sidecar at `rel` stands to the local `sidecar` on a sealing remote: 'same' (sealed to
 * `recipients`, same public part), 'stale' (this very backup, uploaded before sealing or sealed to other
 * recipients: only the sidecar is sent again), 'other' (a different backup under the same name), 'none'.
 */
export async function sealedSidecarState(
  remote: RetryingRemote,
  rel: string,
  local: Sidecar,
  localBytes: Buffer,
  recipients: Recipient[],
): Promise<'same' | 'stale' | 'other' | 'none'> {
  if (!(await remote.stat(rel))) return 'none';
  const bytes = await remote.attempt(rel, (raw) => readSmall(raw, rel));
  if (bytes.equals(localBytes)) return 'stale';
  let theirs: Sidecar;
  try {
    theirs = JSON.parse(bytes.toString('utf8')) as Sidecar;
  } catch {
    return 'other';
  }
  if (!samePublicPart(theirs, local)) return 'other';
  // sealed to the remote's former recipients: the new key alone could not open it, so it is sealed again
  const to = recipients.map(describeRecipient).sort();
  return JSON.stringify([...(theirs as Sidecar & { sealed: SealedField }).sealed.recipients].sort()) === JSON.stringify(to) ? 'same' : 'stale';
}

/** A part of a temp file's name that no concurrent upload (to another remote) shares. */
export const uploadTag = () => randomBytes(4).toString('hex');

/** Uploads the sealed form of the local sidecar as `rel` (the remote commit marker, last as always). */
export async function putSealedSidecar(
  remote: RetryingRemote,
  localSidecar: string,
  rel: string,
  local: Sidecar,
  recipients: Recipient[],
  signal?: AbortSignal,
): Promise<number> {
  // a temp name (`….tmp`) the catalog ignores and the next create cleans up if we die here
  const tmp = `${localSidecar}.${uploadTag()}.upload.tmp`;
  const bytes = Buffer.from(`${JSON.stringify(await sealSidecar(local, recipients), null, 2)}\n`);
  try {
    await writeFresh(tmp, bytes);
    await remote.put(rel, tmp, { signal });
    return bytes.length;
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}
