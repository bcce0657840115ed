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

// rows of one test, of which only some need it (the README examples with an optional codec)
it.for(['a row that needs nothing', 'a row that needs it'])('%s', (row, ctx) => {
  if (row.endsWith('needs it')) missing.require(ctx);
  expect(true).toBe(true);
});

it('a test that needs nothing', () => {
  expect(1 + 1).toBe(2);
});
