import { rm } from 'node:fs/promises';
import { prepareAppDatabase } from './app-database.js';
import { createDatabase, dropDatabase, startPostgres, type PostgresHandle } from './postgres.js';
import { ensureTemporalCli } from './temporal-cli.js';
import { startTemporalDevServer, type TemporalDevServer } from './temporal-server.js';
import { customSearchAttributes } from '../../workflows/search-attributes.js';

export interface SuiteStack {
  temporal: TemporalDevServer;
  postgres: PostgresHandle;
  /** Owner URL of the fresh, migrated database. */
  adminUrl: string;
  /** The same database as the application role (`authenticator`). */
  appUrl: string;
  stop(): Promise<void>;
}

export interface SuiteStackOptions {
  /** Names the database (`gap_<name>_<pid>`), dropped again by `stop()`. */
  name: string;
  /** Where an embedded cluster lives when DATABASE_URL is not set. */
  postgresDataDir: string;
  /** Removed by `stop()`: a throwaway cluster of one run. */
  removeOnStop?: string;
  log: (msg: string) => void;
}

/**
 * The real services the test suite and the benchmarks run against: a headless, in-memory
 * Temporal dev server with our search attributes, and Postgres (DATABASE_URL or embedded) with
 * a fresh migrated database. Whatever started is stopped again if a later step fails.
 */
export async function startSuiteStack(options: SuiteStackOptions): Promise<SuiteStack> {
  const { log } = options;
  const cliPath = await ensureTemporalCli(log);
  const databaseName = `gap_${options.name.replace(/\W/g, '_')}_${process.pid}`;
  const [temporalResult, postgresResult] = await Promise.allSettled([
    startTemporalDevServer({ cliPath, ui: false, searchAttributes: customSearchAttributes }),
    startPostgres({ dataDir: options.postgresDataDir, port: 0, log }),
  ]);
  const temporal = temporalResult.status === 'fulfilled' ? temporalResult.value : undefined;
  const postgres = postgresResult.status === 'fulfilled' ? postgresResult.value : undefined;
  let databaseCreated = false;

  const stop = async () => {
    await temporal?.stop();
    if (postgres) {
      if (databaseCreated) await dropDatabase(postgres.adminUrl, databaseName).catch((err: unknown) => log(`could not drop ${databaseName}: ${String(err)}`));
      await postgres.stop();
    }
    if (options.removeOnStop) await rm(options.removeOnStop, { recursive: true, force: true });
  };

  try {
    if (temporalResult.status === 'rejected') throw temporalResult.reason;
    if (postgresResult.status === 'rejected') throw postgresResult.reason;
    const adminUrl = await createDatabase(postgres!.adminUrl, databaseName, { dropIfExists: true });
    databaseCreated = true;
    const { appUrl } = await prepareAppDatabase(adminUrl, log);
    return { temporal: temporal!, postgres: postgres!, adminUrl, appUrl, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
