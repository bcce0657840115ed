/**
 * Issue 29 item 10: xz -T0 holds a whole block per thread (24 MiB at -6) before a byte comes out, so the
 * bytes read are far ahead of the bytes compressed. Asked (SIGUSR1), xz says how far it is: the
 * compressor reports what it was given and what of that it has compressed, and the stream is unharmed.
 */
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect } from 'vitest';
import type { CodecProgress } from '../../src/codec/external.js';
import { parseXzProgress, xzCodec } from '../../src/codec/xz.js';
import { needs } from '../helpers/optional.js';

describe('parseXzProgress', () => {
  needs('xz', 'xz-utils').it('reads the uncompressed figure of the line xz prints on SIGUSR1', () => {
    expect(parseXzProgress('  --- %          0.0 MiB / 21.3 MiB = 0.001   6.3 MiB/s       0:03             ')).toBe(Math.round(21.3 * 1024 * 1024));
    expect(parseXzProgress('  --- %        512 B / 900 KiB = 0.001')).toBe(900 * 1024);
    expect(parseXzProgress('xz: (stdin): Cannot allocate memory')).toBeUndefined();
  });
});

needs('xz', 'xz-utils').describe('the xz compressor reports its backlog', () => {
  needs('xz', 'xz-utils').it(
    'codec-progress events: what it was given, what it compressed (less, while it works); the output still decompresses to the input',
    async () => {
      const data = randomBytes(16 * 1024 * 1024);
      const compressor = xzCodec.compressor({ level: 6 });
      const events: CodecProgress[] = [];
      compressor.on('codec-progress', (p: CodecProgress) => events.push(p));
      const out: Buffer[] = [];
      await pipeline(
        Readable.from([data.subarray(0, 8 << 20), data.subarray(8 << 20)]),
        compressor,
        new Writable({
          write(chunk, _e, cb) {
            out.push(chunk);
            cb();
          },
        }),
      );
      expect(events.length).toBeGreaterThan(0);
      for (const e of events) {
        expect(e.fed).toBeLessThanOrEqual(data.length);
        expect(e.consumed).toBeLessThanOrEqual(e.fed + 65536);
      }
      // a block is compressed after it is read: at some point xz held more than it had compressed
      expect(events.some((e) => e.fed - e.consumed > 1024 * 1024)).toBe(true);
      const back: Buffer[] = [];
      await pipeline(
        Readable.from(out),
        xzCodec.decompressor(),
        new Writable({
          write(chunk, _e, cb) {
            back.push(chunk);
            cb();
          },
        }),
      );
      expect(Buffer.concat(back).equals(data)).toBe(true);
    },
    120_000,
  );
});
