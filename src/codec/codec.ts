import type { Duplex, Transform } from 'node:stream';

/**
 * A compression codec. Each codec lives in its own file and registers itself in `registry.ts`;
 * the archive extension follows the codec so plain GNU `tar -xf` picks the right filter.
 */
export interface Codec {
  /** name used in flags, env and sidecars: none, gzip, xz, bzip2, zstd */
  readonly name: string;
  /** archive extension, with the dot: `.tar.gz` */
  readonly extension: string;
  /** rough output/input ratio used by the free-space estimate */
  readonly sizeFactor: number;
  /** throws a BackupError (USAGE) naming the missing binary when the codec cannot run here */
  checkAvailable(): Promise<void>;
  compressor(options: { level?: number }): Transform | Duplex;
  decompressor(): Transform | Duplex;
}
