import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import * as zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { BackupError } from '../../src/errors.js';
import { crc32Combine } from '../../src/codec/pgzip-block.js';
import { createParallelGzip, type ParallelGzipOptions } from '../../src/codec/pgzip.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Text, random runs and zeros interleaved: stored and deflated pieces in most blocks. */
function mixed(length: number): Buffer {
  const pieces: Buffer[] = [];
  let size = 0;
  for (let i = 0; size < length; i++) {
    const n = [3 * KiB, 70 * KiB, 200 * KiB, 9 * KiB + 5][i % 4] as number;
    const kind = i % 3;
    pieces.push(kind === 0 ? randomBytes(n) : kind === 1 ? Buffer.from('portrait 0.1234 client studio frame\n'.repeat(Math.ceil(n / 36))).subarray(0, n) : Buffer.alloc(n, i));
    size += n;
  }
  return Buffer.concat(pieces).subarray(0, length);
}

async function compress(input: Buffer, options: ParallelGzipOptions, chunk = 100_003): Promise<Buffer> {
  const out: Buffer[] = [];
  async function* source() {
    for (let off = 0; off < input.length; off += chunk) yield input.subarray(off, off + chunk);
  }
  await pipeline(
    Readable.from(source()),
    createParallelGzip(options),
    new Writable({
      write(c: Buffer, _e, cb) {
        out.push(c);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

describe('parallel gzip worker threads', () => {
  it('combines block CRCs into the CRC of the whole', () => {
    const a = randomBytes(70_001);
    const b = randomBytes(512 * KiB);
    expect(crc32Combine(zlib.crc32(a), zlib.crc32(b), b.length)).toBe(zlib.crc32(Buffer.concat([a, b])));
    expect(crc32Combine(zlib.crc32(a), zlib.crc32(Buffer.alloc(0)), 0)).toBe(zlib.crc32(a));
    // the cached operator for a length gives the same as a fresh one
    const c = randomBytes(512 * KiB);
    expect(crc32Combine(zlib.crc32(b), zlib.crc32(c), c.length)).toBe(zlib.crc32(Buffer.concat([b, c])));
  });

  for (const level of [0, 1, 6, 9]) {
    it(`writes the same bytes in worker threads as on the calling thread (level ${level})`, async () => {
      const input = mixed(5 * MiB + 777);
      const inline = await compress(input, { level, threads: 0 });
      for (const threads of [1, 3]) {
        const threaded = await compress(input, { level, threads, blockSize: 256 * KiB + 3 });
        const again = await compress(input, { level, threads: 0, blockSize: 256 * KiB + 3 });
        expect(threaded.equals(again)).toBe(true);
      }
      const threaded = await compress(input, { level, threads: 2 });
      expect(threaded.equals(inline)).toBe(true);
      expect(zlib.gunzipSync(threaded).equals(input)).toBe(true);
      const sys = spawnSync('gzip', ['-dc'], { input: threaded, maxBuffer: 64 * MiB });
      expect(sys.status).toBe(0);
      expect(sys.stdout.equals(input)).toBe(true);
    });
  }

  it('a failing worker thread fails the stream with a BackupError, not a crash', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vb-pgzip-worker-'));
    try {
      const script = path.join(dir, 'bad-worker.mjs');
      await fsp.writeFile(script, "import { parentPort } from 'node:worker_threads';\nparentPort.on('message', () => { throw new Error('boom in the worker'); });\n");
      const err = await compress(mixed(3 * MiB), { threads: 2, workerScript: pathToFileURL(script) }).catch((e) => e);
      expect(err).toBeInstanceOf(BackupError);
      expect((err as BackupError).code).toBe('FAILED');
      expect((err as Error).message).toMatch(/parallel gzip: a compression thread failed: .*boom in the worker/);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });

  it('lets the process exit after a finished or destroyed stream (no worker left running)', () => {
    const mod = pathToFileURL(path.resolve('dist/codec/pgzip.js')).href;
    const code = `import(${JSON.stringify(mod)}).then(async (m) => {
      const gz = m.createParallelGzip({ threads: 2 }); gz.on('data', () => {});
      gz.write(Buffer.alloc(3 << 20, 7)); gz.end();
      const gz2 = m.createParallelGzip({ threads: 2 }); gz2.on('error', () => {}); gz2.write(Buffer.alloc(3 << 20, 1)); gz2.destroy();
    })`;
    const r = spawnSync(process.execPath, ['-e', code], { timeout: 20_000 });
    expect(r.status).toBe(0);
  });
});
