import { programCodec } from './external.js';

const UNITS: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };

/**
 * What xz prints on SIGUSR1 while compressing: `  --- %   0.0 MiB / 21.3 MiB = 0.001   6.3 MiB/s   0:03`,
 * compressed / uncompressed; the uncompressed figure counts what its threads have compressed, not
 * what they hold. Exported for the unit test.
 */
export function parseXzProgress(line: string): number | undefined {
  const m = /\s([\d.]+) (B|KiB|MiB|GiB|TiB) \/ ([\d.]+) (B|KiB|MiB|GiB|TiB) = /.exec(line);
  return m ? Math.round(Number(m[3]) * UNITS[m[4]]) : undefined;
}

export const xzCodec = programCodec({
  name: 'xz',
  extension: '.tar.xz',
  sizeFactor: 0.95,
  debianPackage: 'xz-utils',
  defaultLevel: 6,
  compressArgs: ['-T0'],
  progress: { signal: 'SIGUSR1', parse: parseXzProgress },
});
