import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // The Temporal SDK's native worker does not survive worker_threads; forks it is.
    pool: 'forks',
    globalSetup: ['tests/support/global-setup.ts', 'tests/support/console-build.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: two files at a time keep Temporal, Postgres and the workers responsive.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
