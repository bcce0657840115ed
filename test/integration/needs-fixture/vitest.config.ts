// Runs needs.fixture.ts alone, with the suite's skip reporter: test/integration/optional.test.ts starts it.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('.', import.meta.url)),
    include: ['needs.fixture.ts'],
    pool: 'forks',
    reporters: ['default', fileURLToPath(new URL('../../helpers/skip-reporter.ts', import.meta.url))],
  },
});
