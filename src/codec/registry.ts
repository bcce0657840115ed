import { usageError } from '../errors.js';
import { bzip2Codec } from './bzip2.js';
import type { Codec } from './codec.js';
import { gzipCodec } from './gzip.js';
import { noneCodec } from './none.js';
import { xzCodec } from './xz.js';
import { zstdCodec } from './zstd.js';

const codecs = new Map<string, Codec>();

export function registerCodec(codec: Codec): void {
  codecs.set(codec.name, codec);
}

for (const c of [gzipCodec, noneCodec, xzCodec, bzip2Codec, zstdCodec]) registerCodec(c);

export const CODEC_NAMES = (): string[] => [...codecs.keys()];

export function getCodec(name: string): Codec {
  const codec = codecs.get(name);
  if (!codec) throw usageError(`unknown compression '${name}'`, `use one of: ${CODEC_NAMES().join(', ')}`);
  return codec;
}

export const getCodecOrUndefined = (name: string): Codec | undefined => codecs.get(name);

/** The codec whose archive extension ends `fileName` (longest match, so .tar.gz beats .tar). */
export function codecForFile(fileName: string): Codec | undefined {
  const base = fileName.replace(/\.part\d{3,}$/, '');
  return [...codecs.values()].sort((a, b) => b.extension.length - a.extension.length).find((c) => base.endsWith(c.extension));
}
