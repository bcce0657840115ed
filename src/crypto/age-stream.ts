import { createCipheriv, createDecipheriv, createHash, type Hash, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { BackupError } from '../errors.js';
import { buildHeader, type ParsedHeader, parseHeader, payloadKey, type UnwrapContext, unwrapFileKey } from './age-header.js';
import type { Identity, Recipient } from './age-keys.js';

/**
 * The age STREAM payload as Transform stages: 64 KiB plaintext chunks sealed with ChaCha20-Poly1305
 * under nonce = 11-byte big-endian counter || last-chunk flag. Memory stays at about one chunk.
 */
export const CHUNK = 64 * 1024;
const TAG = 16;
const SEALED = CHUNK + TAG;
const NONCE_BYTES = 16;

function chunkNonce(counter: number, last: boolean): Buffer {
  const n = Buffer.alloc(12);
  n.writeUIntBE(counter, 5, 6); // bytes 0-4 stay zero: 2^48 chunks is 16 EiB
  n[11] = last ? 1 : 0;
  return n;
}

export interface PlaintextDigest {
  size: number;
  /** absent when the stage was built without hashing */
  sha256?: string;
}

/** Plaintext in, age file out. Build it with `createEncryptStream` (the header needs async scrypt). */
export class AgeEncryptStream extends Transform {
  private readonly pending = Buffer.allocUnsafe(CHUNK);
  private fill = 0;
  private counter = 0;
  private started = false;
  private readonly hash?: Hash;
  private size = 0;

  constructor(
    private readonly head: Buffer,
    private readonly key: Buffer,
    hashPlaintext = true,
  ) {
    super({ highWaterMark: 1 << 20 });
    if (hashPlaintext) this.hash = createHash('sha256');
  }

  /** Size and SHA-256 of the plaintext that went in; valid after the stream finished. */
  digest(): PlaintextDigest {
    return { size: this.size, sha256: this.hash?.digest('hex') };
  }

  /** sealed output of one _transform call, pushed as one buffer (two pushes per chunk cost a third of the speed) */
  private out: Buffer[] = [];

  private seal(data: Buffer, last: boolean): void {
    const c = createCipheriv('chacha20-poly1305', this.key, chunkNonce(this.counter++, last), { authTagLength: TAG });
    this.out.push(c.update(data));
    c.final();
    this.out.push(c.getAuthTag());
  }

  private flushOut(): void {
    if (this.out.length) this.push(this.out.length === 1 ? this.out[0] : Buffer.concat(this.out));
    this.out = [];
  }

  private begin(): void {
    if (this.started) return;
    this.started = true;
    this.out.push(this.head);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.begin();
    this.hash?.update(chunk);
    this.size += chunk.length;
    let off = 0;
    while (off < chunk.length) {
      // a full pending chunk is sealed only once more data shows it is not the last one
      if (this.fill === CHUNK) {
        this.seal(this.pending, false);
        this.fill = 0;
      }
      if (this.fill === 0 && chunk.length - off > CHUNK) {
        // whole chunks straight from the input, no copy
        this.seal(chunk.subarray(off, off + CHUNK), false);
        off += CHUNK;
        continue;
      }
      const n = Math.min(CHUNK - this.fill, chunk.length - off);
      chunk.copy(this.pending, this.fill, off, off + n);
      this.fill += n;
      off += n;
    }
    this.flushOut();
    cb();
  }

  override _flush(cb: TransformCallback): void {
    this.begin();
    // an empty plaintext is one empty final chunk; otherwise the final chunk is never empty
    this.seal(this.pending.subarray(0, this.fill), true);
    this.flushOut();
    cb();
  }
}

/** An encrypting stage for `recipients`: a fresh file key and nonce per stream. */
export async function createEncryptStream(recipients: Recipient[], opts: { hashPlaintext?: boolean } = {}): Promise<AgeEncryptStream> {
  const fileKey = randomBytes(16);
  const nonce = randomBytes(NONCE_BYTES);
  const header = await buildHeader(fileKey, recipients);
  return new AgeEncryptStream(Buffer.concat([header, nonce]), payloadKey(fileKey, nonce), opts.hashPlaintext !== false);
}

export interface DecryptOptions extends UnwrapContext {
  /** also hash the plaintext (deep verify compares it with the sidecar); default true */
  hashPlaintext?: boolean;
}

/**
 * age file in, plaintext out. Every chunk is authenticated before it is passed on; the stream fails
 * (exit 3) on a wrong identity, an altered byte or a truncation — a truncation only at its very end,
 * so consumers must treat their output as provisional until this stream has finished.
 */
export class AgeDecryptStream extends Transform {
  private head: Buffer[] = [];
  private headBytes = 0;
  private key?: Buffer;
  private nonceLeft = NONCE_BYTES;
  private nonce: Buffer[] = [];
  private rest: Buffer = Buffer.alloc(0);
  private counter = 0;
  private readonly hash?: Hash;
  private size = 0;
  /** the parsed header, once read (rekey and messages use it) */
  header?: ParsedHeader;

  constructor(
    private readonly identities: Identity[],
    private readonly opts: DecryptOptions = {},
  ) {
    super({ highWaterMark: 1 << 20 });
    if (opts.hashPlaintext !== false) this.hash = createHash('sha256');
  }

  digest(): PlaintextDigest {
    return { size: this.size, sha256: this.hash?.digest('hex') };
  }

  private fail(msg: string): BackupError {
    return new BackupError('DAMAGED', `${this.opts.subject ? `${this.opts.subject}: ` : ''}${msg}`);
  }

  private open(sealed: Buffer, last: boolean): Buffer | undefined {
    const d = createDecipheriv('chacha20-poly1305', this.key!, chunkNonce(this.counter, last), { authTagLength: TAG });
    d.setAuthTag(sealed.subarray(sealed.length - TAG));
    const out = d.update(sealed.subarray(0, sealed.length - TAG));
    try {
      d.final();
    } catch {
      return undefined;
    }
    this.counter++;
    return out;
  }

  private output(plain: Buffer): void {
    this.hash?.update(plain);
    this.size += plain.length;
    this.out.push(plain);
  }

  private out: Buffer[] = [];

  private flushOut(): void {
    if (this.out.length) this.push(this.out.length === 1 ? this.out[0] : Buffer.concat(this.out));
    this.out = [];
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.consume(chunk).then(() => cb(), cb);
  }

  private async consume(input: Buffer): Promise<void> {
    let data = input;
    if (!this.key) {
      this.head.push(data);
      this.headBytes += data.length;
      const buf = this.head.length === 1 ? this.head[0] : Buffer.concat(this.head, this.headBytes);
      this.head = [buf];
      const header = parseHeader(buf);
      if (!header) return;
      this.header = header;
      const fileKey = await unwrapFileKey(header, this.identities, this.opts);
      data = buf.subarray(header.length);
      this.head = [];
      this.rest = Buffer.alloc(0);
      this.key = fileKey; // payload key derived once the nonce is in
    }
    if (this.nonceLeft > 0) {
      const n = Math.min(this.nonceLeft, data.length);
      this.nonce.push(data.subarray(0, n));
      this.nonceLeft -= n;
      data = data.subarray(n);
      if (this.nonceLeft > 0) return;
      this.key = payloadKey(this.key, Buffer.concat(this.nonce));
    }
    if (this.rest.length) data = Buffer.concat([this.rest, data]);
    let off = 0;
    // keep at least one sealed chunk back: only the end of the input says which chunk is the last
    while (data.length - off > SEALED) {
      const plain = this.open(data.subarray(off, off + SEALED), false);
      if (!plain) throw this.fail(`authentication failed at chunk ${this.counter}: the file was altered or truncated`);
      this.output(plain);
      off += SEALED;
    }
    this.flushOut();
    this.rest = data.subarray(off);
  }

  override _flush(cb: TransformCallback): void {
    if (!this.header) {
      cb(this.fail(this.headBytes ? 'not a complete age file (the header is cut short)' : 'the file is empty, not an age file'));
      return;
    }
    if (this.nonceLeft > 0) {
      cb(this.fail('the age file is truncated (no payload)'));
      return;
    }
    const last = this.rest;
    if (last.length < TAG) {
      cb(this.fail('the age file is truncated (the final chunk is missing)'));
      return;
    }
    if (last.length === TAG && this.counter > 0) {
      cb(this.fail('the age file ends with an empty chunk (not allowed)'));
      return;
    }
    const plain = this.open(last, true);
    if (!plain) {
      cb(this.fail('authentication failed at the final chunk: the file was altered or truncated'));
      return;
    }
    this.output(plain);
    this.flushOut();
    cb();
  }
}

export const createDecryptStream = (identities: Identity[], opts: DecryptOptions = {}): AgeDecryptStream => new AgeDecryptStream(identities, opts);
