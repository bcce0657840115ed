// A test file whose tests need a program no machine has (see test/unit/optional.test.ts).
import { expect, it } from 'vitest';
import { needs } from '../../helpers/optional.js';

const missing = needs('vb-no-such-program', 'vb-no-such-package');

missing.describe('a suite that needs it', () => {
  it('would run the program', () => {
    expect(true).toBe(true);
  });
});

missing.it('a test that needs it', () => {
  expect(true).toBe(true);
});

it('a test that needs nothing', () => {
  expect(1 + 1).toBe(2);
});
