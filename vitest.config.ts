import { defineConfig } from 'vitest/config';

/**
 * Two tiers. `npm test` (the quick tier): unit, integration and the fast end-to-end files, a few minutes
 * on two cores. `npm run test:slow`: the fault trials (kills at every step, damage, disk full, writers)
 * and the slowest end-to-end files. `npm run test:all` runs both; `.ci/run` runs both with CI=true.
 * VB_TIER picks the tier: quick (default), slow or all.
 */
export const SLOW = [
  'test/faults/**/*.test.ts',
  'test/e2e/incremental.test.ts',
  'test/e2e/point-in-time.test.ts',
  'test/e2e/restore-by-hand.test.ts',
  'test/e2e/restore-edges.test.ts',
  'test/e2e/backup-edges.test.ts',
  'test/integration/remote-rclone.test.ts',
  'test/e2e/postgres.test.ts',
  'test/integration/combined-truth-pg.test.ts',
  // a fresh copy of the repository built and installed into a scratch root: minutes on two cores
  'test/e2e/install.test.ts',
];

const tier = process.env.VB_TIER ?? 'quick';
if (!['quick', 'slow', 'all'].includes(tier)) throw new Error(`VB_TIER must be quick, slow or all (got ${tier})`);
const fullTrials = process.env.FAULT_TRIALS ? [] : ['test/faults/**/*.full.test.ts'];

export default defineConfig({
  test: {
    include: tier === 'slow' ? SLOW : ['test/**/*.test.ts'],
    exclude: [...(tier === 'quick' ? SLOW : []), ...fullTrials, '**/node_modules/**'],
    globalSetup: ['./test/helpers/run-tmpdir.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
    // the skip list comes last, after the summary
    reporters: ['default', './test/helpers/skip-reporter.ts'],
  },
});
