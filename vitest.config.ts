import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: process.env.FAULT_TRIALS ? [] : ['test/faults/**/*.full.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
    // the skip list comes last, after the summary
    reporters: ['default', './test/helpers/skip-reporter.ts'],
  },
});
