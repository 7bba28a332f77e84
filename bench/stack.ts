import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { prepareAppDatabase } from '../scripts/stack/app-database.js';
import { createDatabase, dropDatabase, startPostgres, type PostgresHandle } from '../scripts/stack/postgres.js';
import { ensureTemporalCli } from '../scripts/stack/temporal-cli.js';
import { startTemporalDevServer, type TemporalDevServer } from '../scripts/stack/temporal-server.js';
import { customSearchAttributes } from '../workflows/search-attributes.js';

const root = fileURLToPath(new URL('..', import.meta.url));

export interface BenchStack {
  temporal: TemporalDevServer;
  postgres: PostgresHandle;
  /** Owner URL of the bench's fresh, migrated database. */
  adminUrl: string;
  /** The same database as the application role (`authenticator`). */
  appUrl: string;
  stop(): Promise<void>;
}

/**
 * The real services a benchmark measures against, started the way the test suite starts
 * them: a headless Temporal dev server with our search attributes and Postgres
 * (DATABASE_URL or embedded) with a fresh migrated database, dropped again by `stop()`.
 */
export async function startBenchStack(name: string, log: (msg: string) => void): Promise<BenchStack> {
  const cliPath = await ensureTemporalCli(log);
  const [temporal, postgres] = await Promise.all([
    startTemporalDevServer({ cliPath, ui: false, searchAttributes: customSearchAttributes }),
    startPostgres({ dataDir: path.join(root, '.data', `bench-${name}-postgres`), port: 0, log }),
  ]);
  const databaseName = `gap_bench_${name.replace(/\W/g, '_')}_${process.pid}`;
  const adminUrl = await createDatabase(postgres.adminUrl, databaseName, { dropIfExists: true });
  const { appUrl } = await prepareAppDatabase(adminUrl, log);
  return {
    temporal,
    postgres,
    adminUrl,
    appUrl,
    stop: async () => {
      await dropDatabase(postgres.adminUrl, databaseName).catch(() => undefined);
      await postgres.stop();
      await temporal.stop();
    },
  };
}
