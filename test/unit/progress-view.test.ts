/** Issue 13, item 1: what a progress line says (done/total, percent, files, rate, ETA). */
import { describe, expect, it } from 'vitest';
import { formatProgress } from '../../src/cli/progress.js';

describe('formatProgress', () => {
  it('done/total bytes and files, percent, rate and ETA', () => {
    const s = formatProgress({ done: 25 * 1024 * 1024, total: 100 * 1024 * 1024, files: 3, totalFiles: 12 }, 5000);
    expect(s).toBe('25.0 MiB / 100.0 MiB (25%), 3/12 files, 5.0 MiB/s, ETA 15.0 s');
  });
  it('no rate or ETA in the first second, or once everything is read', () => {
    expect(formatProgress({ done: 10, total: 100 }, 500)).toBe('10 B / 100 B (10%)');
    expect(formatProgress({ done: 100, total: 100 }, 9000)).toBe('100 B / 100 B (100%)');
  });
  it('database pages, and no total when none is known', () => {
    expect(formatProgress({ done: 40, total: 400, unit: 'pages' }, 100)).toBe('40 / 400 pages (10%)');
    expect(formatProgress({ done: 2048 }, 2000)).toBe('2.0 KiB, 1.0 KiB/s');
  });
  it("counts what the compressor holds but has not compressed as still to do (issue 29 item 10)", () => {
    const MiB = 1024 * 1024;
    // 40 MiB read in 10 s, 30 of them still in xz: 10% done at 1 MiB/s, not 40% at 4 MiB/s
    expect(formatProgress({ done: 40 * MiB, total: 100 * MiB, backlog: 30 * MiB }, 10_000)).toBe(
      '10.0 MiB / 100.0 MiB (10%), 1.0 MiB/s, ETA 1m 30s, 30.0 MiB read, not yet compressed',
    );
    // everything read, half of it still in the compressor: an estimate, not "100%" and silence
    expect(formatProgress({ done: 100 * MiB, total: 100 * MiB, backlog: 50 * MiB }, 50_000)).toBe(
      '50.0 MiB / 100.0 MiB (50%), 1.0 MiB/s, ETA 50.0 s, 50.0 MiB read, not yet compressed',
    );
  });
});
