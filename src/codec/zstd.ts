import type { Codec } from './codec.js';
import { processFilter, requireBinary } from './external.js';

export const zstdCodec: Codec = {
  name: 'zstd',
  extension: '.tar.zst',
  sizeFactor: 0.97,
  checkAvailable: () => requireBinary('zstd', 'zstd', 'zstd'),
  compressor: ({ level }) => processFilter('zstd', ['-T0', `-${level ?? 3}`, '-c', '-q']),
  decompressor: () => processFilter('zstd', ['-d', '-c', '-q']),
};
