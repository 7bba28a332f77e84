import { defineConfig } from 'vitest/config';

const unitTests = 'tests/unit/**/*.test.ts';

export default defineConfig({
  test: {
    // The Temporal SDK's native worker does not survive worker_threads; forks it is.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: two files at a time keep Temporal, Postgres and the workers responsive.
    maxWorkers: 2,
    reporters: ['default'],
    projects: [
      {
        // Pure modules: no Temporal, no Postgres, no global setup; `npm run test:unit` runs in seconds.
        extends: true,
        test: { name: 'unit', include: [unitTests], testTimeout: 5_000 },
      },
      {
        // Everything else runs against the real stack the global setup starts (Temporal dev server, Postgres).
        extends: true,
        test: { name: 'stack', include: ['tests/**/*.test.ts'], exclude: [unitTests], globalSetup: ['tests/support/global-setup.ts', 'scripts/stack/console-build.ts'] },
      },
    ],
  },
});
