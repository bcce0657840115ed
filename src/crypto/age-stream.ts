import { createHash, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { BackupError } from '../errors.js';
import { CHUNK, openRun, SEALED, sealRun } from './age-chunks.js';
import { buildHeader, type ParsedHeader, parseHeader, payloadKey, type UnwrapContext, unwrapFileKey } from './age-header.js';
import type { Identity, Recipient } from './age-keys.js';
import type { AgeJob, AgeReply } from './age-worker.js';

/**
 * The age STREAM payload as Transform stages: 64 KiB plaintext chunks sealed with ChaCha20-Poly1305
 * (age-chunks.ts). A stream of more than one run of chunks (1 MiB) seals or opens them, and hashes the
 * plaintext, in a worker thread of its own (age-worker.ts): on the calling thread that was ~1 s of a
 * 600 MB backup's or restore's main thread, which also reads, packs, inflates and writes. Memory stays
 * at a few runs in flight.
 */
export { CHUNK } from './age-chunks.js';
const NONCE_BYTES = 16;
/** plaintext bytes per run sent to the thread: 16 chunks */
const RUN = 16 * CHUNK;
/** sealed bytes per run read back: the same 16 chunks */
const SEALED_RUN = 16 * SEALED;
/** runs in flight before the writer upstream sees backpressure */
const IN_FLIGHT = 2;

export interface PlaintextDigest {
  size: number;
  /** absent when the stage was built without hashing */
  sha256?: string;
}

export interface AgeStreamOptions {
  /** hash the plaintext (the sidecar's plaintext_checksum; deep verify compares it); default true */
  hashPlaintext?: boolean;
  /** seal/open runs after the first in a worker thread; default true (tests compare both ways) */
  thread?: boolean;
}

/** the compiled worker; from the TypeScript sources (tests) the build's copy of it */
const WORKER_SCRIPT = new URL(import.meta.url.endsWith('.ts') ? '../../dist/crypto/age-worker.js' : './age-worker.js', import.meta.url);

const threadFailure = (detail: string) =>
  new BackupError('FAILED', `age: the encryption thread failed: ${detail}`, { hint: 'this is a bug or the system is out of memory; retry' });

/** One stream's worker thread: runs are done in the order sent. Referenced only while it holds one. */
class AgeThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (r: AgeReply) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private failed?: Error;
  private closed = false;
  /** input buffers back from the thread, to be filled again */
  readonly spare: Buffer[] = [];

  constructor(key: Buffer, hash: boolean) {
    this.worker = new Worker(WORKER_SCRIPT, { resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 8 } });
    this.worker.unref();
    this.worker.on('message', (reply: AgeReply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) this.worker.unref();
      if ('back' in reply && this.spare.length < IN_FLIGHT) this.spare.push(Buffer.from(reply.back));
      p.resolve(reply);
    });
    this.worker.on('error', (err) => this.fail(threadFailure(err.message)));
    this.worker.on('exit', (code) => {
      if (!this.closed) this.fail(threadFailure(`the thread exited (code ${code})`));
    });
    this.worker.postMessage({ op: 'init', key: new Uint8Array(key), hash } satisfies AgeJob);
  }

  private fail(err: Error): void {
    this.failed ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  /** `data` must own its ArrayBuffer whole: it is transferred */
  run(op: 'seal' | 'open', data: Buffer, length: number, counter: number, final: boolean): Promise<AgeReply> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    return new Promise<AgeReply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) this.worker.ref();
      const job: AgeJob = { op, id, data: data.buffer as ArrayBuffer, length, counter, final };
      this.worker.postMessage(job, [job.data]);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.fail(threadFailure('closed'));
    void this.worker.terminate().catch(() => {});
  }
}

interface Run {
  promise: Promise<void>;
  out?: Buffer;
}

/**
 * What the encrypt and decrypt stages share: a run buffer filled from the input, runs done inline (the
 * only run of a small stream) or in the thread, and their outputs pushed in order.
 */
abstract class AgeRuns extends Transform {
  protected run: Buffer;
  protected fill = 0;
  /** the first chunk number of the next run */
  protected counter = 0;
  protected thread?: AgeThread;
  private readonly runs: Run[] = [];
  protected sha256?: string;
  protected size = 0;
  protected readonly hashing: boolean;
  private readonly threaded: boolean;

  constructor(
    protected readonly runSize: number,
    opts: AgeStreamOptions,
  ) {
    super({ highWaterMark: 1 << 20 });
    this.run = Buffer.allocUnsafeSlow(runSize);
    this.hashing = opts.hashPlaintext !== false;
    this.threaded = opts.thread !== false;
  }

  /** the key runs are sealed or opened with (known once the header is read, for decryption) */
  protected abstract runKey(): Buffer;
  protected abstract readonly op: 'seal' | 'open';
  /** chunks in a run of `length` bytes */
  protected abstract chunksIn(length: number, final: boolean): number;
  /** a failed run's message, as the stream's error */
  protected abstract failure(message: string): Error;
  /** called before the first output is pushed */
  protected beforeOutput(): void {}
  /** called with the length of every output pushed */
  protected outputBytes(_n: number): void {}

  /** Copies `data` into runs; a full run is sent only once more input shows it is not the last. */
  protected fillRuns(data: Buffer): void {
    let off = 0;
    while (off < data.length) {
      if (this.fill === this.runSize) this.send(false);
      const n = Math.min(this.runSize - this.fill, data.length - off);
      data.copy(this.run, this.fill, off, off + n);
      this.fill += n;
      off += n;
    }
  }

  protected send(final: boolean): void {
    const data = this.run;
    const length = this.fill;
    const counter = this.counter;
    this.counter += this.chunksIn(length, final);
    this.fill = 0;
    const job: Run = { promise: Promise.resolve() };
    if (!this.threaded || (final && counter === 0)) {
      // the whole stream is this one run, or threads are off: no thread is worth starting
      this.run = final ? Buffer.alloc(0) : Buffer.allocUnsafeSlow(this.runSize);
      job.out = this.inline(data.subarray(0, length), counter, final);
    } else {
      this.thread ??= new AgeThread(this.runKey(), this.hashing);
      const thread = this.thread;
      this.run = final ? Buffer.alloc(0) : (thread.spare.pop() ?? Buffer.allocUnsafeSlow(this.runSize));
      job.promise = thread.run(this.op, data, length, counter, final).then((reply) => {
        if ('error' in reply) throw this.failure(reply.error);
        job.out = Buffer.from(reply.out, reply.offset, reply.length);
        if (final) this.sha256 = reply.sha256;
      });
      // a rejection surfaces through drain; this only keeps a run not awaited yet from counting as unhandled
      job.promise.catch(() => {});
    }
    this.runs.push(job);
  }

  private inlineHash = undefined as ReturnType<typeof createHash> | undefined;

  /** a run on this thread: the hash continues across runs when threads are off */
  private inline(data: Buffer, counter: number, final: boolean): Buffer {
    if (this.hashing) this.inlineHash ??= createHash('sha256');
    let out: Buffer;
    if (this.op === 'seal') out = sealRun(this.runKey(), data, counter, final, this.inlineHash);
    else {
      const r = openRun(this.runKey(), data, counter, final, this.inlineHash);
      if ('error' in r) throw this.failure(r.error);
      out = r.plain;
    }
    if (final) this.sha256 = this.inlineHash?.digest('hex');
    return out;
  }

  /** Pushes finished runs in order, waiting while more than `limit` are in flight. */
  protected async drain(limit: number): Promise<void> {
    for (;;) {
      const head = this.runs[0];
      if (!head || this.destroyed) return;
      if (head.out === undefined) {
        if (this.runs.length <= limit) return;
        await head.promise;
        if (this.destroyed) return;
      }
      this.runs.shift();
      this.beforeOutput();
      this.outputBytes(head.out!.length);
      if (head.out!.length) this.push(head.out);
    }
  }

  protected finish(cb: TransformCallback): void {
    this.drain(0).then(
      () => {
        this.thread?.close();
        cb();
      },
      (err) => {
        this.thread?.close();
        cb(err);
      },
    );
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.thread?.close();
    cb(err);
  }

  /** Size and SHA-256 of the plaintext; valid after the stream finished. */
  digest(): PlaintextDigest {
    return { size: this.size, sha256: this.sha256 };
  }
}

/** Plaintext in, age file out. Build it with `createEncryptStream` (the header needs async scrypt). */
export class AgeEncryptStream extends AgeRuns {
  protected readonly op = 'seal' as const;
  private started = false;

  constructor(
    private readonly head: Buffer,
    private readonly key: Buffer,
    opts: AgeStreamOptions | boolean = {},
  ) {
    super(RUN, typeof opts === 'boolean' ? { hashPlaintext: opts } : opts);
  }

  protected runKey(): Buffer {
    return this.key;
  }

  // every chunk is full but the final one, which may be empty only when it is the only one
  protected chunksIn(length: number): number {
    return Math.max(1, Math.ceil(length / CHUNK));
  }

  protected failure(message: string): Error {
    return threadFailure(message);
  }

  protected override beforeOutput(): void {
    if (this.started) return;
    this.started = true;
    this.push(this.head);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.size += chunk.length;
    try {
      this.fillRuns(chunk);
    } catch (err) {
      cb(err as Error);
      return;
    }
    this.drain(IN_FLIGHT).then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    try {
      this.send(true);
    } catch (err) {
      cb(err as Error);
      return;
    }
    this.finish(cb);
  }
}

/** An encrypting stage for `recipients`: a fresh file key and nonce per stream. */
export async function createEncryptStream(recipients: Recipient[], opts: { hashPlaintext?: boolean } = {}): Promise<AgeEncryptStream> {
  const fileKey = randomBytes(16);
  const nonce = randomBytes(NONCE_BYTES);
  const header = await buildHeader(fileKey, recipients);
  return new AgeEncryptStream(Buffer.concat([header, nonce]), payloadKey(fileKey, nonce), opts.hashPlaintext !== false);
}

export interface DecryptOptions extends UnwrapContext, AgeStreamOptions {}

/**
 * age file in, plaintext out. Every chunk is authenticated before it is passed on; the stream fails
 * (exit 3) on a wrong identity, an altered byte or a truncation — a truncation only at its very end,
 * so consumers must treat their output as provisional until this stream has finished.
 */
export class AgeDecryptStream extends AgeRuns {
  protected readonly op = 'open' as const;
  private head: Buffer[] = [];
  private headBytes = 0;
  private key?: Buffer;
  private nonceLeft = NONCE_BYTES;
  private nonce: Buffer[] = [];
  /** the parsed header, once read (rekey and messages use it) */
  header?: ParsedHeader;

  constructor(
    private readonly identities: Identity[],
    private readonly opts: DecryptOptions = {},
  ) {
    super(SEALED_RUN, opts);
  }

  protected runKey(): Buffer {
    return this.key!;
  }

  protected chunksIn(length: number, final: boolean): number {
    return final ? Math.ceil(length / SEALED) : length / SEALED;
  }

  protected override outputBytes(n: number): void {
    this.size += n;
  }

  protected failure(message: string): Error {
    return this.fail(message);
  }

  private fail(msg: string): BackupError {
    return new BackupError('DAMAGED', `${this.opts.subject ? `${this.opts.subject}: ` : ''}${msg}`);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.consume(chunk)
      .then(() => this.drain(IN_FLIGHT))
      .then(() => cb(), cb);
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
    // a full run is opened only once more input shows it does not hold the final chunk (fillRuns)
    this.fillRuns(data);
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
    try {
      this.send(true);
    } catch (err) {
      cb(err as Error);
      return;
    }
    this.finish(cb);
  }
}

export const createDecryptStream = (identities: Identity[], opts: DecryptOptions = {}): AgeDecryptStream => new AgeDecryptStream(identities, opts);
