import type { Codec } from './codec.js';
import { processFilter, requireBinary } from './external.js';

export const bzip2Codec: Codec = {
  name: 'bzip2',
  extension: '.tar.bz2',
  sizeFactor: 0.97,
  checkAvailable: () => requireBinary('bzip2', 'bzip2', 'bzip2'),
  compressor: ({ level }) => processFilter('bzip2', [`-${level ?? 9}`, '-c', '-q']),
  decompressor: () => processFilter('bzip2', ['-d', '-c', '-q']),
};
