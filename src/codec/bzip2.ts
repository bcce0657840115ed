import { programCodec } from './external.js';

export const bzip2Codec = programCodec({ name: 'bzip2', extension: '.tar.bz2', sizeFactor: 0.97, debianPackage: 'bzip2', defaultLevel: 9 });
