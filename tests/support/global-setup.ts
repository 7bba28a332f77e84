import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode } from '@temporalio/worker';
import { ensureTemporalCli } from '../../scripts/stack/temporal-cli.js';
import { startTemporalDevServer, type TemporalDevServer } from '../../scripts/stack/temporal-server.js';
import { createDatabase, dropDatabase, startPostgres, type PostgresHandle } from '../../scripts/stack/postgres.js';
import { prepareAppDatabase } from '../../scripts/stack/app-database.js';
import { customSearchAttributes } from '../../workflows/search-attributes.js';
import { workflowsPath } from '../../workers/agent-runs-worker.js';
import { failureConverterPath } from '../../lib/temporal-codec.js';
import { workflowInterceptorModules } from '../../workers/observability.js';

/**
 * Starts the real services the suite needs, once: a Temporal dev server (in memory, headless),
 * Postgres (DATABASE_URL or an embedded server) with a fresh migrated database, and the
 * workflow bundle. Test files find them through TEST_* environment variables.
 */
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const log = (msg: string) => console.log(`[test-stack] ${msg}`);

export default async function setup(): Promise<() => Promise<void>> {
  const started = Date.now();
  const cliPath = await ensureTemporalCli(log);

  let temporal: TemporalDevServer | undefined;
  let postgres: PostgresHandle | undefined;
  const databaseName = `gap_test_${process.pid}_${Date.now()}`;
  // A cluster of its own per run (initdb takes ~2 s): concurrent runs on one machine must not
  // share a postmaster that the first one to finish would stop under the other.
  const runDir = path.join(repoRoot, '.data', 'test-runs', String(process.pid));

  const teardown = async () => {
    await temporal?.stop();
    if (postgres) {
      await dropDatabase(postgres.adminUrl, databaseName).catch((err: unknown) => log(`could not drop ${databaseName}: ${String(err)}`));
      await postgres.stop();
    }
    await rm(runDir, { recursive: true, force: true });
  };

  try {
    const [temporalServer, postgresHandle, bundle] = await Promise.all([
      startTemporalDevServer({ cliPath, ui: false, searchAttributes: customSearchAttributes }),
      startPostgres({ dataDir: path.join(runDir, 'postgres'), port: 0, log }),
      // The failure converter runs inside the sandbox too, so it is part of the bundle.
      bundleWorkflowCode({ workflowsPath, failureConverterPath, workflowInterceptorModules, logger: quietBundlerLogger }),
    ]);
    temporal = temporalServer;
    postgres = postgresHandle;

    const adminUrl = await createDatabase(postgres.adminUrl, databaseName, { dropIfExists: true });
    const { appUrl } = await prepareAppDatabase(adminUrl, log);

    const artifacts = path.join(repoRoot, 'tests', '.artifacts');
    await mkdir(artifacts, { recursive: true });
    const bundlePath = path.join(artifacts, `workflow-bundle-${process.pid}.js`);
    await writeFile(bundlePath, bundle.code);

    process.env.TEST_TEMPORAL_ADDRESS = temporal.address;
    process.env.TEST_TEMPORAL_NAMESPACE = temporal.namespace;
    process.env.TEST_DATABASE_ADMIN_URL = adminUrl;
    process.env.TEST_DATABASE_URL = appUrl;
    process.env.TEST_WORKFLOW_BUNDLE = bundlePath;
    log(`ready in ${((Date.now() - started) / 1000).toFixed(1)} s (temporal ${temporal.address}, postgres ${postgres.embedded ? 'embedded' : 'DATABASE_URL'})`);
  } catch (err) {
    await teardown();
    throw err;
  }
  return teardown;
}

// The bundler logs every module at info; only problems matter in test output.
const quietBundlerLogger = {
  log: () => {},
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: (message: string) => log(`bundler: ${message}`),
  error: (message: string) => log(`bundler: ${message}`),
};
