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
    // V8 coverage of the production code (on with --coverage; `npm test` turns it on for the full
    // run and prints the total). Only code run inside the test processes counts: the entry points
    // the stack tests spawn as child processes and workflow code in the Temporal sandbox do not
    // report here, so the figure understates what the suite exercises.
    coverage: {
      provider: 'v8',
      include: ['api/**/*.ts', 'workers/**/*.ts', 'workflows/**/*.ts', 'activities/**/*.ts', 'integrations/**/*.ts', 'lib/**/*.ts'],
      reporter: ['text-summary', 'json-summary'],
      reportsDirectory: 'tests/.artifacts/coverage',
    },
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
