import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gzipCodec } from '../../src/codec/gzip.js';
import { createParallelGzip, type ParallelGzipOptions } from '../../src/codec/pgzip.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Deterministic bytes, so a failure reproduces: a xorshift stream looks random to any compressor. */
function noise(length: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function text(length: number, seed = 1): Buffer {
  const words = ['portrait', 'marker', 'video', 'scan', '0.1234', '640.5', 'client', 'studio', '\n', 'frame'];
  const parts: string[] = [];
  let size = 0;
  let x = seed;
  while (size < length) {
    x = (x * 1103515245 + 12345) >>> 0;
    const w = words[x % words.length] as string;
    parts.push(w, ' ');
    size += w.length + 1;
  }
  return Buffer.from(parts.join('')).subarray(0, length);
}

/** Like the data set's marker.iset: 1 KiB random blocks between smooth runs, plus text and media. */
function mixed(length: number, seed = 1): Buffer {
  const pieces: Buffer[] = [];
  let size = 0;
  let i = 0;
  while (size < length) {
    const kind = (i * 7 + seed) % 5;
    const n = [1 * KiB, 4 * KiB, 40 * KiB, 300 * KiB, 3 * KiB + 7][i % 5] as number;
    const piece =
      kind === 0 ? noise(n, seed + i) : kind === 1 ? text(n, seed + i) : kind === 2 ? Buffer.alloc(n, i & 0xff) : kind === 3 ? noise(n, i) : smooth(n, i);
    pieces.push(piece);
    size += n;
    i++;
  }
  return Buffer.concat(pieces).subarray(0, length);
}

/** Text that repeats after random gaps short enough for the repeat to be within deflate's window. */
function gaps(): Buffer {
  const t = text(14 * KiB, 42);
  const pieces: Buffer[] = [];
  for (let i = 0; i < 40; i++) pieces.push(t, noise(9 * KiB + i * 211, i), t.subarray(i * 100));
  return Buffer.concat(pieces);
}

function smooth(length: number, v: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) out[i] = (v + (i >> 6)) & 0xff;
  return out;
}

/** Writes `input` in chunks of `chunkSize` (or varied sizes) and collects the output. */
async function compress(input: Buffer, options: ParallelGzipOptions = {}, chunkSize = 64 * KiB): Promise<Buffer> {
  const out: Buffer[] = [];
  async function* source() {
    let off = 0;
    let k = 0;
    while (off < input.length) {
      const n = chunkSize > 0 ? chunkSize : 1 + ((k++ * 7919) % 150_000);
      yield input.subarray(off, off + n);
      off += n;
    }
  }
  await pipeline(
    Readable.from(source()),
    createParallelGzip(options),
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        out.push(chunk);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

function systemGunzip(data: Buffer): Buffer {
  const result = spawnSync('gzip', ['-dc'], { input: data, maxBuffer: 256 * MiB });
  expect(result.status, result.stderr.toString()).toBe(0);
  return result.stdout;
}

function sha(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function expectSame(actual: Buffer, expected: Buffer): void {
  expect(actual.length).toBe(expected.length);
  expect(sha(actual)).toBe(sha(expected));
}

describe('createParallelGzip round trips', () => {
  const cases: [string, () => Buffer, ParallelGzipOptions, number][] = [
    ['empty input', () => Buffer.alloc(0), {}, 64 * KiB],
    ['one byte', () => Buffer.from('x'), {}, 64 * KiB],
    ['tiny text', () => Buffer.from('hello, gzip\n'), {}, 1],
    ['random, not a multiple of the block size', () => noise(3 * MiB + 12_345), {}, 64 * KiB],
    ['text, many small blocks', () => text(2 * MiB + 1), { blockSize: 8 * KiB }, 64 * KiB],
    ['text, blocks smaller than the deflate window', () => text(300 * KiB), { blockSize: 5000 }, 777],
    ['mixed, odd chunk sizes', () => mixed(6 * MiB + 3), {}, 0],
    ['mixed, many blocks, concurrency 1', () => mixed(3 * MiB), { blockSize: 64 * KiB, concurrency: 1 }, 0],
    ['mixed, concurrency 8', () => mixed(4 * MiB), { blockSize: 256 * KiB, concurrency: 8 }, 100_000],
    ['mixed, one huge chunk', () => mixed(5 * MiB), {}, 5 * MiB],
    ['zeros', () => Buffer.alloc(2 * MiB + 5), {}, 64 * KiB],
    ['text repeating across stored gaps (back-references into the primed window)', () => gaps(), {}, 64 * KiB],
    ['the same across block boundaries', () => gaps(), { blockSize: 24 * KiB }, 1000],
    ['level 0 stores everything', () => mixed(2 * MiB), { level: 0 }, 64 * KiB],
    ['level 1', () => mixed(2 * MiB), { level: 1 }, 64 * KiB],
    ['level 9', () => mixed(2 * MiB), { level: 9 }, 64 * KiB],
  ];

  for (const [name, make, options, chunkSize] of cases) {
    it(`${name}: zlib and the system gzip read it back byte for byte`, async () => {
      const input = make();
      const gz = await compress(input, options, chunkSize);
      expectSame(zlib.gunzipSync(gz), input);
      expectSame(systemGunzip(gz), input);
    });
  }

  it('is a single gzip member with a correct CRC and length (gzip -t, gzip -l)', async () => {
    const input = mixed(3 * MiB);
    const gz = await compress(input);
    expect([gz[0], gz[1], gz[2]]).toEqual([0x1f, 0x8b, 8]);
    expect(gz.readUInt32LE(gz.length - 8)).toBe(zlib.crc32(input));
    expect(gz.readUInt32LE(gz.length - 4)).toBe(input.length);
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vb-pgzip-'));
    try {
      const file = path.join(dir, 'x.gz');
      await fsp.writeFile(file, gz);
      execFileSync('gzip', ['-t', file]);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });

  it('stores random data instead of deflating it, at a few bytes per 64 KiB', async () => {
    const input = noise(4 * MiB);
    const gz = await compress(input);
    expect(gz.length).toBeGreaterThan(input.length);
    expect(gz.length).toBeLessThan(input.length * 1.0002 + 64);
  });

  it('deflates data that only looks random byte by byte (a repeated random pattern)', async () => {
    const pattern = noise(1500, 77);
    const input = Buffer.concat(Array.from({ length: 2000 }, () => pattern));
    const gz = await compress(input);
    expect(gz.length).toBeLessThan(input.length * 0.05);
    expectSame(zlib.gunzipSync(gz), input);
  });

  it('compresses text about as well as single-threaded gzip -6', async () => {
    const input = text(4 * MiB);
    const gz = await compress(input);
    const reference = zlib.gzipSync(input, { level: 6 }).length;
    expect(gz.length).toBeLessThan(reference * 1.02);
  });

  it('keeps mixed data within 2% of single-threaded gzip -6', async () => {
    const input = mixed(8 * MiB);
    const gz = await compress(input);
    const reference = zlib.gzipSync(input, { level: 6 }).length;
    expect(gz.length).toBeLessThan(reference * 1.02);
  });

  it('can be destroyed while blocks are in flight without stray errors', async () => {
    const gz = createParallelGzip({ blockSize: 64 * KiB, concurrency: 2, level: 9 });
    const errors: unknown[] = [];
    gz.on('error', (err) => errors.push(err));
    gz.on('data', () => {});
    for (let i = 0; i < 8; i++) gz.write(text(64 * KiB, i));
    gz.destroy();
    await new Promise((r) => setTimeout(r, 300));
    expect(errors).toEqual([]);
    expect(gz.destroyed).toBe(true);
  });

  it('refuses bad options', () => {
    expect(() => createParallelGzip({ level: 10 })).toThrow(RangeError);
    expect(() => createParallelGzip({ blockSize: 0 })).toThrow(RangeError);
    expect(() => createParallelGzip({ concurrency: 0 })).toThrow(RangeError);
  });
});

describe('multi-member streams', () => {
  it('two concatenated outputs read back as the concatenated inputs (zlib, system gzip, the codec)', async () => {
    const a = mixed(2 * MiB, 3);
    const b = text(700 * KiB, 5);
    const gz = Buffer.concat([await compress(a), await compress(b), zlib.gzipSync(a.subarray(0, 1000))]);
    const expected = Buffer.concat([a, b, a.subarray(0, 1000)]);
    expectSame(zlib.gunzipSync(gz), expected);
    expectSame(systemGunzip(gz), expected);
    const out: Buffer[] = [];
    await pipeline(
      Readable.from([gz.subarray(0, 12345), gz.subarray(12345)]),
      gzipCodec.decompressor(),
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          out.push(chunk);
          cb();
        },
      }),
    );
    expectSame(Buffer.concat(out), expected);
  });

  it('the gzip codec compresses through the parallel compressor', async () => {
    const input = mixed(2 * MiB);
    const out: Buffer[] = [];
    await pipeline(
      Readable.from([input]),
      gzipCodec.compressor({}),
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          out.push(chunk);
          cb();
        },
      }),
    );
    expectSame(zlib.gunzipSync(Buffer.concat(out)), input);
  });
});

describe('tar archives through the compressor', () => {
  let dir: string;
  const files = new Map<string, Buffer>();

  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vb-pgzip-tar-'));
    files.set('storage/videos/1.mp4', noise(5 * MiB + 17, 11));
    files.set('storage/portraits/1/2/image.jpg', noise(41 * KiB + 3, 12));
    files.set('storage/portraits/1/2/marker.fset', text(37 * KiB, 13));
    files.set('storage/portraits/1/2/marker.iset', mixed(55 * KiB, 14));
    files.set('storage/portraits/1/2/thumb.jpg', noise(5 * KiB, 15));
    files.set('storage/empty.txt', Buffer.alloc(0));
    for (let i = 0; i < 40; i++) files.set(`storage/many/${i}.txt`, text(100 + i * 997, i));
    files.set('storage/videos/2.mp4', noise(2 * MiB, 16));
  });

  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  async function writeArchive(file: string, options: ParallelGzipOptions): Promise<void> {
    const pack = tar.pack();
    const done = pipeline(pack, createParallelGzip(options), fs.createWriteStream(file));
    for (const [name, data] of files) {
      await new Promise<void>((resolve, reject) => {
        pack.entry({ name, size: data.length, mode: 0o644, mtime: new Date(1_700_000_000_000) }, data, (err) =>
          err ? reject(err) : resolve(),
        );
      });
    }
    pack.finalize();
    await done;
  }

  for (const [name, options] of [
    ['default options', {}],
    ['small blocks, stored and deflated pieces interleaved', { blockSize: 20 * KiB, concurrency: 3 }],
    ['level 0 (stored blocks only)', { level: 0 }],
  ] as [string, ParallelGzipOptions][]) {
    it(`GNU tar -xzf extracts every file identically (${name})`, async () => {
      const archive = path.join(dir, `${name.length}.tar.gz`);
      const target = await fsp.mkdtemp(path.join(dir, 'x-'));
      await writeArchive(archive, options);
      execFileSync('tar', ['-xzf', archive, '-C', target]);
      for (const [rel, data] of files) expectSame(await fsp.readFile(path.join(target, rel)), data);
      const listed = execFileSync('tar', ['-tzf', archive]).toString().trim().split('\n');
      expect(listed.sort()).toEqual([...files.keys()].sort());
    });
  }
});

describe('backpressure', () => {
  /** An endless producer of mixed data that counts what the compressor has pulled from it. */
  function source(seed: number): { stream: Readable; produced: () => number } {
    let produced = 0;
    const patterns = [noise(64 * KiB, seed), text(64 * KiB, seed), mixed(64 * KiB, seed)];
    let i = 0;
    const stream = new Readable({
      highWaterMark: 64 * KiB,
      read() {
        const chunk = patterns[i++ % patterns.length] as Buffer;
        produced += chunk.length;
        this.push(chunk);
      },
    });
    return { stream, produced: () => produced };
  }

  it('stops pulling input while nobody reads the output', async () => {
    const blockSize = 256 * KiB;
    const concurrency = 2;
    // hex digits: about half of it survives deflate, and level 9 takes its time over it, far slower
    // than this source produces: only the in-flight limit holds the source back
    const input = Buffer.from(noise(16 * MiB, 3).toString('hex'));
    let produced = 0;
    const stream = new Readable({
      highWaterMark: 64 * KiB,
      read() {
        const chunk = input.subarray(produced, produced + 64 * KiB);
        produced += chunk.length;
        this.push(chunk.length > 0 ? chunk : null);
      },
    });
    const gz = createParallelGzip({ blockSize, concurrency, level: 9 });
    stream.pipe(gz);
    let last = -1;
    while (produced !== last) {
      last = produced;
      await new Promise((r) => setTimeout(r, 300));
    }
    // blocks in flight and being filled, plus input whose output (about half of it) fills the
    // 1 MiB readable buffer, plus the stream buffers
    expect(produced).toBeLessThan((concurrency + 2) * blockSize + 3 * MiB + 4 * 64 * KiB);
    expect(gz.writableLength + gz.readableLength).toBeLessThan(1 * MiB + 2 * blockSize);
    stream.unpipe(gz);
    stream.destroy();
    gz.destroy();
  });

  it('keeps its buffers bounded under a slow consumer', async () => {
    const blockSize = 128 * KiB;
    const concurrency = 3;
    const total = 16 * MiB;
    let produced = 0;
    // random data comes out the size it went in, so what is inside the compressor is measurable
    const input = noise(total, 9);
    const stream = new Readable({
      highWaterMark: 64 * KiB,
      read() {
        const chunk = input.subarray(produced, produced + 64 * KiB);
        produced += chunk.length;
        this.push(chunk.length > 0 ? chunk : null);
      },
    });
    const gz = createParallelGzip({ blockSize, concurrency });
    let consumed = 0;
    let maxInside = 0;
    let maxBuffered = 0;
    const out: Buffer[] = [];
    const sink = new Writable({
      highWaterMark: 16 * KiB,
      write(chunk: Buffer, _enc, cb) {
        out.push(chunk);
        consumed += chunk.length;
        maxInside = Math.max(maxInside, produced - consumed);
        maxBuffered = Math.max(maxBuffered, gz.writableLength + gz.readableLength);
        setTimeout(cb, 2);
      },
    });
    await pipeline(stream, gz, sink);
    expectSame(zlib.gunzipSync(Buffer.concat(out)), input);
    // in flight + the block being filled + the readable buffer (1 MiB) + stream buffers
    expect(maxInside).toBeLessThan((concurrency + 2) * blockSize + 1 * MiB + 4 * 64 * KiB);
    expect(maxBuffered).toBeLessThan(1 * MiB + 2 * blockSize);
  });
});
