import { programCodec } from './external.js';

export const xzCodec = programCodec({ name: 'xz', extension: '.tar.xz', sizeFactor: 0.95, debianPackage: 'xz-utils', defaultLevel: 6, compressArgs: ['-T0'] });
