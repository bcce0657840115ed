import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BackupError } from '../errors.js';
import { exclusiveWriteStream } from '../fsutil.js';
import { describeRecipient, type Identity, type Recipient } from './age-keys.js';
import { type AgeDecryptStream, type AgeEncryptStream, createDecryptStream, createEncryptStream } from './age-stream.js';

/** Encrypted artifacts end in `.age`, after the codec's extension: `storage_backup_ID.tar.gz.age`. */
export const AGE_EXTENSION = '.age';

/** What a sidecar records of an encrypted artifact's plaintext (catalog/sidecar.ts validates it on read). */
export interface EncryptionInfo {
  format: 'age';
  /** public recipients (`age1…`) or 'passphrase (scrypt)': never a secret */
  recipients: string[];
  plaintext_size: number;
  plaintext_checksum?: string;
}

export interface EncryptStage {
  stream: AgeEncryptStream;
  /** the sidecar's `encryption` field; call after the stream finished */
  info(): EncryptionInfo;
}

/** A stage to put between the codec and the file writer when backups are encrypted. */
export async function encryptStage(recipients: Recipient[]): Promise<EncryptStage> {
  const stream = await createEncryptStream(recipients);
  return {
    stream,
    info: () => {
      const d = stream.digest();
      return { format: 'age', recipients: recipients.map(describeRecipient), plaintext_size: d.size, plaintext_checksum: d.sha256 };
    },
  };
}

export interface DecryptContext {
  identities: Identity[];
  /** names the backup in messages */
  subject: string;
  info: EncryptionInfo;
}

/** A decrypting stage for an artifact whose sidecar says it is encrypted. */
export function decryptStage(ctx: DecryptContext): AgeDecryptStream {
  return createDecryptStream(ctx.identities, { subject: ctx.subject, knownRecipients: ctx.info.recipients });
}

/** Compares what a finished decrypt stage produced with the sidecar; returns the problem, if any. */
export function plaintextProblem(stage: AgeDecryptStream, info: EncryptionInfo): string | undefined {
  const d = stage.digest();
  if (d.size !== info.plaintext_size) return `decrypted size ${d.size}, metadata says ${info.plaintext_size}`;
  if (info.plaintext_checksum && d.sha256 && d.sha256 !== info.plaintext_checksum) return 'checksum of the decrypted content does not match';
  return undefined;
}

/** No identity at all: the message names the recipients so the user knows which key to bring. */
export function needIdentity(ctx: Omit<DecryptContext, 'identities'>): BackupError {
  return new BackupError('DAMAGED', `${ctx.subject} is encrypted (to ${ctx.info.recipients.join(', ')}) and cannot be read without a key`, {
    hint: 'give the age identity that opens it (AGE_IDENTITY_FILE, or a passphrase in AGE_PASSPHRASE_FILE)',
    remedy: 'identity',
  });
}

/**
 * Decrypts `input` into `dest` (created 0600) and checks it against the sidecar. The file is complete
 * and authentic when this returns; on any failure it is removed.
 */
export async function decryptToFile(input: Readable, dest: string, ctx: DecryptContext): Promise<void> {
  if (!ctx.identities.length) throw needIdentity(ctx);
  const stage = decryptStage(ctx);
  try {
    // exclusive: a name planted as a link (the copy lands beside the live database) never receives plaintext
    await pipeline(input, stage, exclusiveWriteStream(dest));
    const problem = plaintextProblem(stage, ctx.info);
    if (problem) throw new BackupError('DAMAGED', `${ctx.subject}: ${problem}`);
  } catch (err) {
    await fsp.rm(dest, { force: true });
    throw err;
  }
}

/** Encrypts the file `src` into `sink` (a PartWriter): the database copy's path to `….db.age`. */
export async function encryptFileInto(src: string, sink: Writable, recipients: Recipient[]): Promise<EncryptionInfo> {
  const stage = await encryptStage(recipients);
  await pipeline(createReadStream(src, { highWaterMark: 1 << 20 }), stage.stream, sink);
  return stage.info();
}
