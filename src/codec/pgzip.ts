import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';

export interface ParallelGzipOptions {
  /** zlib level 0-9, default 6; 0 stores everything */
  level?: number;
  /** bytes per unit of parallel work, default 512 KiB */
  blockSize?: number;
  /** blocks compressed at the same time, default the number of CPUs */
  concurrency?: number;
}

/** as fast as 1 MiB blocks on the bench tree, and the whole CLI peaks ~10 MB lower (120 vs 130 MB) */
const DEFAULT_BLOCK = 512 * 1024;
const WINDOW = 32 * 1024;
/**
 * The compressible/incompressible decision is taken per SEGMENT from a sparse byte sample; segments
 * that do not look random are looked at again per FINE piece with a dense sample, so a JPEG between
 * two text files in a tar stream is still stored rather than deflated for nothing.
 */
const SEGMENT = 32 * 1024;
const SEGMENT_STRIDE = 13; // odd, so the sample does not alias with power-of-two record structures
const FINE = 4 * 1024;
const FINE_STRIDE = 2;
/** a stored run shorter than this is not worth ending a deflate piece for */
const MIN_STORED = 8 * 1024;
const STORED_MAX = 65535;
/** MM-corrected order-0 entropy (bits/byte) above which Huffman coding saves < ~1% */
const ENTROPY_STORE = 7.9;
/** equal neighbours are 1/256 = 0.4% of random data; runs and gradients push this way up */
const REPEAT_STORE = 0.015;
/** stored runs at least this long get one real trial at level 1, which must save less than 2% */
const TRIAL_MIN_RUN = 64 * 1024;
const TRIAL_BYTES = 2048;
const TRIAL_MIN_SAVING = 0.02;

const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
/** an empty stored block with BFINAL set: ends the deflate stream after sync-flushed pieces */
const FINAL_BLOCK = Buffer.from([1, 0, 0, 0xff, 0xff]);

/**
 * A parallel gzip compressor in the manner of pigz: the input is cut into blocks, the blocks are
 * deflated concurrently on the libuv thread pool, and the results are joined into ONE gzip member
 * (one header, one deflate stream, one CRC trailer), so every gunzip — including readers that stop
 * after the first member — reads it.
 *
 * Joining works because each piece is deflated with Z_SYNC_FLUSH (it ends byte-aligned and without
 * the final-block bit) and primed with the 32 KiB of input before it, so back-references only
 * point at bytes the inflater has already produced; the compression ratio stays within a hair of
 * single-threaded gzip. Pieces that look incompressible (media files: JPEG, MP4) are not deflated
 * at all: they are written as stored deflate blocks, which costs a memcpy and a CRC instead of
 * the ~15 ns/byte zlib spends failing to compress them.
 */
export function createParallelGzip(options: ParallelGzipOptions = {}): Transform {
  return new ParallelGzip(options);
}

interface Job {
  /** set once every piece is ready; emitted in queue order */
  output?: Buffer;
  promise: Promise<Buffer>;
}

/** Reused block buffers: without them every block would be one more buffer of garbage for the GC. */
class BlockPool {
  private readonly free: Buffer[] = [];
  constructor(
    readonly blockSize: number,
    private readonly keep: number,
  ) {}
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.blockSize);
  }
  give(block: Buffer): void {
    if (this.free.length < this.keep) this.free.push(block);
  }
}

class ParallelGzip extends Transform {
  private readonly level: number;
  private readonly blockSize: number;
  private readonly concurrency: number;
  private pending: Buffer[] = [];
  private pendingLength = 0;
  private readonly queue: Job[] = [];
  /** the last WINDOW input bytes before the next block: the dictionary for its first piece */
  private tail: Buffer = Buffer.alloc(0);
  private tailStored = false;
  private crc = 0;
  private inputLength = 0;
  private headerSent = false;
  private readonly pool: BlockPool;

  constructor(options: ParallelGzipOptions) {
    // one block's worth of output may wait for the reader; more would only raise the peak memory
    super({ readableHighWaterMark: 512 * 1024 });
    this.level = checkInt('level', options.level ?? 6, 0, 9);
    this.blockSize = checkInt('blockSize', options.blockSize ?? DEFAULT_BLOCK, 64, 1 << 30);
    this.concurrency = checkInt('concurrency', options.concurrency ?? availableParallelism(), 1, 1024);
    this.pool = new BlockPool(this.blockSize, this.concurrency + 1);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.pending.push(chunk);
    this.pendingLength += chunk.length;
    while (this.pendingLength >= this.blockSize) this.dispatch(...this.takeBlock(this.blockSize));
    // Holding the callback while too many blocks are in flight is what bounds memory: the writer
    // upstream sees backpressure until the oldest block is out.
    this.emitReady(this.concurrency).then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    if (this.pendingLength > 0) this.dispatch(...this.takeBlock(this.pendingLength));
    this.emitReady(0).then(() => {
      const trailer = Buffer.alloc(8);
      trailer.writeUInt32LE(this.crc >>> 0, 0);
      trailer.writeUInt32LE(this.inputLength % 2 ** 32, 4);
      this.emitOutput(Buffer.concat([FINAL_BLOCK, trailer]));
      callback();
    }, callback);
  }

  /** The next `size` input bytes, and whether the buffer is the pool's (to be given back). */
  private takeBlock(size: number): [Buffer, boolean] {
    const first = this.pending[0];
    let block: Buffer;
    let pooled = false;
    if (first && first.length >= size) {
      // common with large upstream chunks: a view, no copy
      block = first.subarray(0, size);
      if (first.length === size) this.pending.shift();
      else this.pending[0] = first.subarray(size);
    } else {
      pooled = size === this.blockSize;
      block = pooled ? this.pool.take() : Buffer.allocUnsafe(size);
      let filled = 0;
      while (filled < size) {
        const chunk = this.pending[0] as Buffer;
        const n = Math.min(chunk.length, size - filled);
        chunk.copy(block, filled, 0, n);
        filled += n;
        if (n === chunk.length) this.pending.shift();
        else this.pending[0] = chunk.subarray(n);
      }
    }
    this.pendingLength -= size;
    return [block, pooled];
  }

  private dispatch(block: Buffer, pooled: boolean): void {
    this.crc = zlib.crc32(block, this.crc);
    this.inputLength += block.length;
    const runs = this.level === 0 ? [{ start: 0, end: block.length, store: true }] : classify(block);
    const parts: (Buffer | Promise<Buffer>)[] = [];
    let async = false;
    let afterStored = this.tailStored;
    // The pieces of one block are deflated one after the other: parallelism comes from blocks, and
    // the libuv pool (4 threads, shared with every fs call) never holds more than `concurrency`
    // deflate jobs, so the reads feeding this stream do not queue behind a dozen of them.
    let previous: Promise<unknown> = SETTLED;
    for (const run of runs) {
      if (run.store) {
        storedBlocks(block.subarray(run.start, run.end), parts);
      } else {
        // priming with a window of random bytes (a stored run) costs time and finds no matches
        const dictionary = afterStored ? undefined : dictionaryFor(this.tail, block, run.start);
        const data = block.subarray(run.start, run.end);
        const piece = previous.then(() => deflatePiece(data, dictionary, this.level));
        parts.push(piece);
        previous = piece;
        async = true;
      }
      afterStored = run.store && run.end - run.start >= WINDOW;
    }
    const lastRun = runs[runs.length - 1] as Run;
    this.tailStored = lastRun.store && lastRun.end - lastRun.start >= WINDOW;
    this.tail = this.tailStored ? Buffer.alloc(0) : lastWindow(this.tail, block);
    // the concatenation copies the stored pieces out of the block, so it can be reused right after
    const finish = (done: Buffer[]): Buffer => {
      const output = done.length === 1 && done[0]?.buffer !== block.buffer ? done[0] : Buffer.concat(done);
      if (pooled) this.pool.give(block);
      return output;
    };
    const job: Job = async
      ? { promise: Promise.all(parts).then((done) => (job.output = finish(done))) }
      : { output: finish(parts as Buffer[]), promise: SETTLED };
    // A rejection surfaces through emitReady; this only keeps a failing job that is not awaited
    // yet from counting as an unhandled rejection.
    job.promise.catch(() => {});
    this.queue.push(job);
  }

  /** Emits finished blocks in order, waiting while more than `limit` are still in flight. */
  private async emitReady(limit: number): Promise<void> {
    for (;;) {
      const head = this.queue[0];
      if (!head || this.destroyed) return;
      if (head.output === undefined) {
        if (this.queue.length <= limit) return;
        await head.promise;
      }
      this.queue.shift();
      this.emitOutput(head.output as Buffer);
    }
  }

  private emitOutput(data: Buffer): void {
    if (!this.headerSent) {
      this.headerSent = true;
      this.push(GZIP_HEADER);
    }
    if (data.length > 0) this.push(data);
  }
}

const SETTLED: Promise<Buffer> = Promise.resolve(Buffer.alloc(0));

interface Run {
  start: number;
  end: number;
  store: boolean;
}

/** Splits a block into runs of bytes to deflate and bytes to store as they are. */
function classify(block: Buffer): Run[] {
  const runs: Run[] = [];
  const add = (start: number, end: number, store: boolean): void => {
    const last = runs[runs.length - 1];
    if (last && last.store === store) last.end = end;
    else runs.push({ start, end, store });
  };
  for (let start = 0; start < block.length; start += SEGMENT) {
    const end = Math.min(block.length, start + SEGMENT);
    if (looksIncompressible(block, start, end, SEGMENT_STRIDE)) {
      add(start, end, true);
      continue;
    }
    for (let from = start; from < end; from += FINE) {
      const to = Math.min(end, from + FINE);
      add(from, to, looksIncompressible(block, from, to, FINE_STRIDE));
    }
  }
  for (const run of runs) {
    if (!run.store) continue;
    const length = run.end - run.start;
    // The byte statistics miss redundancy only LZ matching finds (repeated random strings): a
    // cheap real trial guards the long runs, where a wrong guess would cost the most.
    if (length < MIN_STORED || (length >= TRIAL_MIN_RUN && trialSaves(block, run))) run.store = false;
  }
  return mergeRuns(runs);
}

const counts = new Uint32Array(256);

function looksIncompressible(buf: Buffer, start: number, end: number, stride: number): boolean {
  const length = end - start;
  if (length < 1024) return false;
  counts.fill(0);
  let n = 0;
  let repeats = 0;
  for (let i = start; i < end - 1; i += stride) {
    const b = buf[i] as number;
    counts[b]++;
    if (b === buf[i + 1]) repeats++;
    n++;
  }
  if (repeats > n * REPEAT_STORE) return false;
  let sum = 0;
  let distinct = 0;
  for (let b = 0; b < 256; b++) {
    const c = counts[b] as number;
    if (c > 0) {
      sum += c * Math.log2(c);
      distinct++;
    }
  }
  // Miller-Madow correction: the plug-in estimate is biased low on a few thousand samples
  const entropy = Math.log2(n) - sum / n + (distinct - 1) / (2 * n * Math.LN2);
  return entropy >= ENTROPY_STORE;
}

function trialSaves(block: Buffer, run: Run): boolean {
  const length = Math.min(TRIAL_BYTES, run.end - run.start);
  const from = run.start + Math.floor((run.end - run.start - length) / 2);
  const sample = block.subarray(from, from + length);
  const out = zlib.deflateRawSync(sample, { level: 1 }).length;
  return out < length * (1 - TRIAL_MIN_SAVING);
}

function mergeRuns(runs: Run[]): Run[] {
  const merged: Run[] = [];
  for (const run of runs) {
    const last = merged[merged.length - 1];
    if (last && last.store === run.store) last.end = run.end;
    else merged.push({ ...run });
  }
  return merged;
}

/** Stored deflate blocks (BFINAL=0): a 5-byte header each, the data itself is not copied here. */
function storedBlocks(data: Buffer, parts: (Buffer | Promise<Buffer>)[]): void {
  for (let off = 0; off < data.length; off += STORED_MAX) {
    const len = Math.min(STORED_MAX, data.length - off);
    const header = Buffer.allocUnsafe(5);
    header[0] = 0;
    header.writeUInt16LE(len, 1);
    header.writeUInt16LE(~len & 0xffff, 3);
    parts.push(header, data.subarray(off, off + len));
  }
}

function deflatePiece(data: Buffer, dictionary: Buffer | undefined, level: number): Promise<Buffer> {
  const options: zlib.ZlibOptions = {
    level,
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
    // one output buffer big enough for the whole piece: a single trip to the thread pool
    chunkSize: Math.max(64 * 1024, data.length + (data.length >> 8) + 1024),
  };
  if (dictionary && dictionary.length > 0) options.dictionary = dictionary;
  return new Promise((resolve, reject) => {
    zlib.deflateRaw(data, options, (err, out) => (err ? reject(err) : resolve(out)));
  });
}

/** The WINDOW bytes of input just before `offset` in `block`, reaching back into `tail`. */
function dictionaryFor(tail: Buffer, block: Buffer, offset: number): Buffer | undefined {
  if (offset >= WINDOW) return block.subarray(offset - WINDOW, offset);
  if (offset > 0 && tail.length === 0) return block.subarray(0, offset);
  if (tail.length === 0 && offset === 0) return undefined;
  const fromTail = Math.min(tail.length, WINDOW - offset);
  return Buffer.concat([tail.subarray(tail.length - fromTail), block.subarray(0, offset)]);
}

function lastWindow(tail: Buffer, block: Buffer): Buffer {
  // a copy, so the dictionary does not pin the whole previous block (or the caller's chunk)
  if (block.length >= WINDOW) return Buffer.from(block.subarray(block.length - WINDOW));
  return Buffer.concat([tail, block]).subarray(-WINDOW);
}

function checkInt(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`parallel gzip: ${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
  return value;
}
