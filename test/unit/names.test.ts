import { describe, expect, it } from 'vitest';
import { compareIds } from '../../src/catalog/names.js';

describe('compareIds', () => {
  it('orders by second, then by the _N counter numerically (the bare second first)', () => {
    const ids = ['20261201_020000_10', '20261201_020001', '20261201_020000', '20261130_235959_2', '20261201_020000_2', '20261201_020000_9'];
    expect([...ids].sort(compareIds)).toEqual(['20261130_235959_2', '20261201_020000', '20261201_020000_2', '20261201_020000_9', '20261201_020000_10', '20261201_020001']);
    expect(compareIds('20261201_020000', '20261201_020000')).toBe(0);
  });
});
