import { describe, expect, it } from 'vitest';
import { formatAge, formatBytes, formatDuration } from '../../src/human.js';

// One format per kind of number, the same in the terminal, a chat notification and a check's reason.
describe('formatBytes / formatDuration / formatAge', () => {
  it('sizes in binary units with one decimal', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(3 * 1024 ** 3)).toBe('3.0 GiB');
  });

  it('elapsed times: ms, seconds with a decimal, then the same "Xm YYs" / "Xh YYm" as a notification', () => {
    expect(formatDuration(23)).toBe('23 ms');
    expect(formatDuration(12_345)).toBe('12.3 s');
    expect(formatDuration(65_000)).toBe('1m 05s');
    expect(formatDuration(2 * 3_600_000 + 5 * 60_000)).toBe('2h 05m');
    expect(formatDuration(-1)).toBe('?');
  });

  it('ages are coarse and never negative', () => {
    expect(formatAge(12_000)).toBe('12s');
    expect(formatAge(29 * 60_000 + 45_000)).toBe('29m 45s');
    expect(formatAge(26 * 3_600_000)).toBe('1d 2h');
    expect(formatAge(-5000)).toBe('0s');
  });
});

describe('countOf', () => {
  it('says "1 file" and "2 files", with an irregular plural where given', async () => {
    const { countOf } = await import('../../src/human.js');
    expect(countOf(1, 'file')).toBe('1 file');
    expect(countOf(0, 'file')).toBe('0 files');
    expect(countOf(2, 'entry', 'entries')).toBe('2 entries');
    expect(countOf(1, 'entry', 'entries')).toBe('1 entry');
  });
});
