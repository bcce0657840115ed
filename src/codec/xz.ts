import type { Codec } from './codec.js';
import { processFilter, requireBinary } from './external.js';

export const xzCodec: Codec = {
  name: 'xz',
  extension: '.tar.xz',
  sizeFactor: 0.95,
  checkAvailable: () => requireBinary('xz', 'xz', 'xz-utils'),
  compressor: ({ level }) => processFilter('xz', ['-T0', `-${level ?? 6}`, '-c', '-q']),
  decompressor: () => processFilter('xz', ['-d', '-c', '-q']),
};
