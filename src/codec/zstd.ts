import { programCodec } from './external.js';

export const zstdCodec = programCodec({ name: 'zstd', extension: '.tar.zst', sizeFactor: 0.97, debianPackage: 'zstd', defaultLevel: 3, compressArgs: ['-T0'] });
