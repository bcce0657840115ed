import { PassThrough } from 'node:stream';
import type { Codec } from './codec.js';

export const noneCodec: Codec = {
  name: 'none',
  extension: '.tar',
  sizeFactor: 1,
  async checkAvailable() {},
  compressor: () => new PassThrough({ highWaterMark: 1 << 20 }),
  decompressor: () => new PassThrough({ highWaterMark: 1 << 20 }),
};
