import * as zlib from 'node:zlib';
import type { Codec } from './codec.js';

export const gzipCodec: Codec = {
  name: 'gzip',
  extension: '.tar.gz',
  sizeFactor: 1,
  async checkAvailable() {},
  compressor: ({ level }) => zlib.createGzip({ level: level ?? 6, chunk: 1 << 16 }),
  decompressor: () => zlib.createGunzip({ chunk: 1 << 16 }),
};
