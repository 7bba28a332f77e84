// @ts-check
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

// Workflow code is replayed deterministically inside Temporal's sandbox: no I/O, no Node
// built-ins, no clocks or randomness except the SDK's own.
const forbiddenInWorkflows = [
  { group: ['node:*'], message: 'Workflows must not use Node built-ins; do I/O in activities.' },
  ...['fs', 'path', 'os', 'crypto', 'http', 'https', 'net', 'child_process', 'worker_threads', 'stream', 'events', 'url', 'util', 'dns', 'tls', 'zlib'].map((name) => ({
    group: [name, `${name}/*`],
    message: 'Workflows must not use Node built-ins; do I/O in activities.',
  })),
  { group: ['pg', 'pg-*', 'postgres'], message: 'Workflows must not touch the database; use an activity.' },
  { group: ['undici', 'axios', 'got', 'node-fetch', 'openai', 'ky'], message: 'Workflows must not make HTTP calls; use an activity.' },
  { group: ['pino', 'pino-*', 'winston', '@sentry/*'], message: 'Use `log` from @temporalio/workflow inside workflows.' },
  // Types from lib are erased from the bundle (lib/run-status.ts: the one run status); values are not.
  { group: ['**/lib/*'], allowTypeImports: true, message: 'Workflows import only types from lib/ (values would pull its dependencies into the bundle).' },
  { group: ['**/integrations/*', '**/integrations/**', '@temporalio/client', '@temporalio/worker', '@temporalio/activity'], message: 'Workflows import only @temporalio/workflow, activity types and pure helpers.' },
];

export default tseslint.config(
  { ignores: ['node_modules/', '.data/', 'dist/', 'coverage/', 'tests/.artifacts/', 'web/dist/', 'web/src/api/schema.d.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: { ...globals.node },
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // The console runs in the browser (web/tsconfig.json types it with the DOM).
    files: ['web/**/*.{ts,tsx}'],
    languageOptions: { globals: { ...globals.browser } },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': ['error', { patterns: forbiddenInWorkflows }],
      'no-restricted-globals': [
        'error',
        { name: 'fetch', message: 'Workflows must not make HTTP calls; use an activity.' },
        { name: 'process', message: 'Workflows must not read the process environment.' },
        { name: 'setInterval', message: 'Use sleep() or condition() from @temporalio/workflow.' },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
