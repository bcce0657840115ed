import * as zlib from 'node:zlib';

/**
 * One block of the parallel gzip compressor (pgzip.ts), as a pure function of its bytes and the 32 KiB
 * of input before it: the same bytes out whether it runs in a worker thread (pgzip-worker.ts) or on the
 * calling thread. Nothing here touches the stream, so blocks can be compressed in any order and on any
 * thread; pgzip.ts joins the outputs in order and combines the CRCs.
 */

export const WINDOW = 32 * 1024;
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

export interface BlockOutput {
  /** raw deflate: stored blocks and sync-flushed pieces, byte-aligned, without the final-block bit */
  output: Buffer;
  /** CRC-32 of the block's input alone (pgzip.ts combines them in order) */
  crc: number;
}

/**
 * Compresses `block`: runs that look random are stored (a 5-byte header per 64 KiB), the rest deflated
 * at `level` with Z_SYNC_FLUSH, each piece primed with the 32 KiB before it (reaching back into `tail`,
 * the input just before the block) unless those bytes were random, where priming finds nothing.
 * The output is one fresh buffer of its own (an ArrayBuffer that can be transferred between threads).
 */
export function compressBlock(block: Buffer, tail: Buffer, level: number): BlockOutput {
  const crc = zlib.crc32(block) >>> 0;
  const runs = level === 0 ? [{ start: 0, end: block.length, store: true }] : classify(block);
  const parts: Buffer[] = [];
  let afterStored = tail.length >= WINDOW && looksIncompressible(tail, tail.length - WINDOW, tail.length, SEGMENT_STRIDE);
  for (const run of runs) {
    const data = block.subarray(run.start, run.end);
    if (run.store) storedBlocks(data, parts);
    else parts.push(deflatePiece(data, afterStored ? undefined : dictionaryFor(tail, block, run.start), level));
    afterStored = run.store && run.end - run.start >= WINDOW;
  }
  let total = 0;
  for (const p of parts) total += p.length;
  // allocUnsafeSlow: never a slice of the shared pool, so the caller may transfer its ArrayBuffer
  const output = Buffer.allocUnsafeSlow(total);
  let off = 0;
  for (const p of parts) off += p.copy(output, off);
  return { output, crc };
}

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
function storedBlocks(data: Buffer, parts: Buffer[]): void {
  for (let off = 0; off < data.length; off += STORED_MAX) {
    const len = Math.min(STORED_MAX, data.length - off);
    const header = Buffer.allocUnsafe(5);
    header[0] = 0;
    header.writeUInt16LE(len, 1);
    header.writeUInt16LE(~len & 0xffff, 3);
    parts.push(header, data.subarray(off, off + len));
  }
}

function deflatePiece(data: Buffer, dictionary: Buffer | undefined, level: number): Buffer {
  const options: zlib.ZlibOptions = {
    level,
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
    // one output buffer big enough for the whole piece
    chunkSize: Math.max(64 * 1024, data.length + (data.length >> 8) + 1024),
  };
  if (dictionary && dictionary.length > 0) options.dictionary = dictionary;
  return zlib.deflateRawSync(data, options);
}

/** The WINDOW bytes of input just before `offset` in `block`, reaching back into `tail`. */
function dictionaryFor(tail: Buffer, block: Buffer, offset: number): Buffer | undefined {
  if (offset >= WINDOW) return block.subarray(offset - WINDOW, offset);
  if (tail.length === 0) return offset > 0 ? block.subarray(0, offset) : undefined;
  const fromTail = Math.min(tail.length, WINDOW - offset);
  return Buffer.concat([tail.subarray(tail.length - fromTail), block.subarray(0, offset)]);
}

/** The last WINDOW bytes of `tail` followed by `block`: the tail of the next block. A copy of its own. */
export function nextTail(tail: Buffer, block: Buffer): Buffer {
  if (block.length >= WINDOW) return Buffer.from(block.subarray(block.length - WINDOW));
  return Buffer.concat([tail, block]).subarray(-WINDOW);
}

// CRC-32 of a concatenation from the CRCs of its parts (zlib's crc32_combine, GF(2) matrices): the
// blocks are checksummed on whichever thread compresses them, and joined here in order.

function gf2Times(mat: Uint32Array, vec: number): number {
  let sum = 0;
  let v = vec >>> 0;
  for (let i = 0; v !== 0; i++, v >>>= 1) if (v & 1) sum ^= mat[i] as number;
  return sum >>> 0;
}

function gf2Square(square: Uint32Array, mat: Uint32Array): void {
  for (let n = 0; n < 32; n++) square[n] = gf2Times(mat, mat[n] as number);
}

/** The operator crc(A) -> crc(A followed by len zero bytes) as a matrix, for the lengths seen last. */
const operators = new Map<number, Uint32Array>();

/** CRC-32 of A+B, given crc(A), crc(B) and B's length. */
export function crc32Combine(crc1: number, crc2: number, len2: number): number {
  if (len2 <= 0) return crc1 >>> 0;
  let op = operators.get(len2);
  if (!op) {
    // linear in crc1: build the matrix once per length (nearly every block has the same length)
    op = new Uint32Array(32);
    for (let i = 0; i < 32; i++) op[i] = shift(2 ** i, len2);
    if (operators.size > 8) operators.clear();
    operators.set(len2, op);
  }
  return (gf2Times(op, crc1) ^ crc2) >>> 0;
}

function shift(crc1: number, len2: number): number {
  const even = new Uint32Array(32);
  const odd = new Uint32Array(32);
  odd[0] = 0xedb88320;
  for (let n = 1, row = 1; n < 32; n++, row <<= 1) odd[n] = row;
  gf2Square(even, odd); // 2 zero bits
  gf2Square(odd, even); // 4 zero bits
  let c = crc1 >>> 0;
  let len = len2;
  do {
    gf2Square(even, odd);
    if (len % 2) c = gf2Times(even, c);
    len = Math.floor(len / 2);
    if (len === 0) break;
    gf2Square(odd, even);
    if (len % 2) c = gf2Times(odd, c);
    len = Math.floor(len / 2);
  } while (len !== 0);
  return c;
}
