import * as zlib from 'node:zlib';
import type { Codec } from './codec.js';
import { createParallelGzip } from './pgzip.js';

export const gzipCodec: Codec = {
  name: 'gzip',
  extension: '.tar.gz',
  sizeFactor: 1,
  async checkAvailable() {},
  // Parallel, and media that does not compress is stored rather than deflated again: see pgzip.ts.
  compressor: ({ level }) => createParallelGzip({ level: level ?? 6 }),
  // Gunzip reads concatenated members too, so archives from pigz or `cat a.gz b.gz` restore as well.
  // 1 MiB output buffers: with 64 KiB, inflating a mostly stored archive was ten thousand thread-pool
  // round trips and as many buffers for the GC (1.6 s of callbacks on the main thread for 600 MB)
  decompressor: () => zlib.createGunzip({ chunkSize: 1 << 20 }),
};
