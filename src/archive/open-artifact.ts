import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { artifactFiles, type Sidecar } from '../catalog/sidecar.js';
import type { Codec } from '../codec/codec.js';
import { codecForFile, getCodec } from '../codec/registry.js';
import { decryptStage, plaintextProblem } from '../crypto/age-artifact.js';
import type { Identity } from '../crypto/age-keys.js';
import { BackupError } from '../errors.js';
import { readParts } from './parts.js';

/**
 * The one read path for a stored archive: its parts in order -> age decryption (when the sidecar says
 * it is encrypted) -> the codec's decompressor -> the tar stream a reader consumes; and, once the
 * reader is done, the rest of the ciphertext read and the plaintext checked against the sidecar (age
 * authenticates every chunk, but only the last one proves nothing was cut off). restore, the chain
 * restore, verify and dump all read through here.
 */

/** The codec of a stored archive: the sidecar's `compression`, else its file name (sidecars of older tools). */
export function artifactCodec(s: Pick<Sidecar, 'compression' | 'backup_path'>): Codec | undefined {
  return s.compression ? getCodec(s.compression) : codecForFile(s.backup_path ?? '');
}

export interface OpenArtifactOptions {
  /** names the backup in messages: `storage backup ID` */
  subject: string;
  /** age identities, for an encrypted archive */
  identities?: Identity[];
  /** the stored bytes when the caller reads them itself (verify hashes them on the way); default: the parts in `dir` */
  input?: Readable;
}

export interface OpenedArtifact {
  /** the plaintext tar stream; it flows from the start, so a reader takes its error from `errored`, never from an unhandled event */
  stream: Readable;
  encrypted: boolean;
  /** after the reader is done: reads what it left of the ciphertext; what does not match the sidecar (undefined when all does, or nothing is encrypted) */
  plaintextProblem(): Promise<string | undefined>;
  /** the same, thrown as DAMAGED `<subject>: <problem>` */
  authenticate(): Promise<void>;
  /** gives up reading: every stage and the input are destroyed */
  destroy(): void;
}

/** Opens the archive of the (non-full) backup whose sidecar is `sidecar` and whose files are in `dir`. */
export async function openArtifact(dir: string, sidecar: Sidecar, opts: OpenArtifactOptions): Promise<OpenedArtifact> {
  const codec = artifactCodec(sidecar);
  if (!codec) throw new BackupError('DAMAGED', `unknown compression '${sidecar.compression}' in ${opts.subject}`);
  await codec.checkAvailable();
  const enc = sidecar.encryption;
  const input = opts.input ?? readParts(artifactFiles(sidecar).map((p) => path.join(dir, p.file)));
  const decrypt = enc ? decryptStage({ identities: opts.identities ?? [], subject: opts.subject, info: enc }) : undefined;
  const plain = decrypt ? input.pipe(decrypt) : input;
  if (decrypt) input.on('error', (e) => decrypt.destroy(e));
  const out = plain.pipe(codec.decompressor());
  plain.on('error', (e) => out.destroy(e));
  out.on('error', () => {});
  // plaintext: nothing is read after the reader, so its end (or its giving up) ends the input too; an
  // encrypted input stays open for the authentication, which reads it to its end
  if (!decrypt) out.on('close', () => input.destroy());
  const problem = async (): Promise<string | undefined> => {
    if (!decrypt) return undefined;
    decrypt.unpipe();
    decrypt.resume();
    await finished(decrypt);
    return plaintextProblem(decrypt, enc!);
  };
  return {
    stream: out as unknown as Readable,
    encrypted: !!decrypt,
    plaintextProblem: problem,
    authenticate: async () => {
      const p = await problem();
      if (p) throw new BackupError('DAMAGED', `${opts.subject}: ${p}`);
    },
    destroy: () => {
      out.destroy();
      decrypt?.destroy();
      input.destroy();
    },
  };
}
