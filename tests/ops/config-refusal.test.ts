/**
 * Each production entry point, started with an empty production environment, refuses to start:
 * it exits 1 before opening any port or connection, and its one message names every variable it
 * is missing, so a deployment is fixed in one round instead of one restart per variable.
 */
import { describe, expect, it } from 'vitest';
import { runScript } from '../support/app-processes.js';

// deploy:promote keeps 1 for "the replay gate refused the build"; anything else it exits 2.
const processes: Array<{ entry: string; missing: string[]; exitCode?: number }> = [
  { entry: 'api/main.ts', missing: ['DATABASE_URL', 'SUPABASE_JWT_SECRET', 'TEMPORAL_CODEC_KEYS'] },
  { entry: 'workers/main.ts', missing: ['DATABASE_URL', 'LLM_API_KEY', 'TEMPORAL_CODEC_KEYS'] },
  { entry: 'api/codec-server-main.ts', missing: ['TEMPORAL_CODEC_KEYS', 'CODEC_SERVER_TOKENS'] },
  { entry: 'scripts/deploy-setup.ts', missing: ['DATABASE_MIGRATION_URL'] },
  { entry: 'scripts/deploy-promote.ts', missing: ['TEMPORAL_WORKER_DEPLOYMENT_NAME', 'TEMPORAL_WORKER_BUILD_ID'], exitCode: 2 },
];

describe('a process without its configuration', () => {
  it.each(processes)('$entry refuses to start and names every missing variable', ({ entry, missing, exitCode = 1 }) => {
    const result = runScript(entry, [], { APP_ENV: 'production' }, 60_000);
    const output = result.stdout + result.stderr;
    expect(result.status, output).toBe(exitCode);
    expect(output).toContain('Invalid configuration');
    for (const name of missing) expect(output, name).toMatch(new RegExp(`${name}\\b[^\\n]*(required|must)`));
    // A message for a person, not a crash: no stack trace.
    expect(output).not.toMatch(/\n\s+at .+\(.+:\d+:\d+\)/);
  }, 90_000);

  it('a worker with one half of its version names the other half, with the rest of what is missing', () => {
    const result = runScript('workers/main.ts', [], { APP_ENV: 'production', TEMPORAL_WORKER_BUILD_ID: 'v2' }, 60_000);
    const output = result.stdout + result.stderr;
    expect(result.status, output).toBe(1);
    for (const name of ['DATABASE_URL', 'LLM_API_KEY', 'TEMPORAL_CODEC_KEYS', 'TEMPORAL_WORKER_DEPLOYMENT_NAME']) expect(output, name).toContain(name);
  }, 90_000);
});
