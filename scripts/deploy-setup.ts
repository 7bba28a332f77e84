/**
 * `npm run deploy:setup`: the one-shot job a deployment runs before the API and workers start
 * (docker/compose.yaml service `setup`, docker/k8s/setup-job.yaml). Idempotent:
 *
 * 1. applies database migrations as the schema owner (DATABASE_MIGRATION_URL);
 * 2. when AUTHENTICATOR_PASSWORD is set (self-hosted Postgres; Supabase manages this role),
 *    lets `authenticator`, the role the API and workers log in as, log in with it;
 * 3. waits for Temporal, creates the namespace when it does not exist yet (self-hosted servers
 *    do not create one; retention TEMPORAL_NAMESPACE_RETENTION_DAYS) and registers the custom
 *    search attributes (workflows/search-attributes.ts), adding only what is missing.
 *
 * Every variable is validated first (lib/config.ts) and the connection is secured like every
 * other process's (lib/temporal.ts).
 */
import { msToTs } from '@temporalio/common/lib/time.js';
import { ConfigError, loadSetupConfig, migrationLockOptions, type SetupConfig } from '../lib/config.js';
import { migrate } from '../lib/migrate.js';
import { createTemporalClient, describeTemporalConnection, type TemporalClient } from '../lib/temporal.js';
import { customSearchAttributes } from '../workflows/search-attributes.js';
import { setAuthenticatorPassword } from './stack/app-database.js';
import { registerSearchAttributes } from './stack/temporal-server.js';

// gRPC status codes (the SDK surfaces grpc-js ServiceErrors with a numeric `code`).
const grpcStatus = { NOT_FOUND: 5, ALREADY_EXISTS: 6, PERMISSION_DENIED: 7, UNAUTHENTICATED: 16 } as const;

const log = (message: string) => console.log(`[setup] ${message}`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function grpcCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

async function connect(config: SetupConfig): Promise<TemporalClient> {
  const deadline = Date.now() + config.SETUP_TEMPORAL_WAIT_MS;
  for (;;) {
    try {
      const client = await createTemporalClient(config);
      await client.workflowService.getSystemInfo({});
      return client;
    } catch (err) {
      // A refused certificate or key will not fix itself: say so at once.
      if (grpcCode(err) === grpcStatus.UNAUTHENTICATED || grpcCode(err) === grpcStatus.PERMISSION_DENIED || Date.now() > deadline) {
        throw new Error(`Temporal at ${describeTemporalConnection(config)} is not reachable: ${(err as Error).message}`, { cause: err });
      }
      await sleep(2_000);
    }
  }
}

/** Creates the namespace if it is missing; answers whether it did. */
async function ensureNamespace(client: TemporalClient, config: SetupConfig): Promise<boolean> {
  const namespace = config.TEMPORAL_NAMESPACE;
  try {
    await client.workflowService.describeNamespace({ namespace });
    return false;
  } catch (err) {
    if (grpcCode(err) !== grpcStatus.NOT_FOUND) throw err;
  }
  try {
    await client.workflowService.registerNamespace({
      namespace,
      workflowExecutionRetentionPeriod: msToTs(`${config.TEMPORAL_NAMESPACE_RETENTION_DAYS} days`),
      description: 'gpt-agent-platform',
    });
  } catch (err) {
    // Two setup jobs racing, or a namespace created between describe and register.
    if (grpcCode(err) !== grpcStatus.ALREADY_EXISTS) {
      throw new Error(`namespace ${namespace} does not exist and could not be created (on Temporal Cloud, create it in the Cloud UI or with tcld): ${(err as Error).message}`, { cause: err });
    }
  }
  return true;
}

async function main(): Promise<void> {
  const config = loadSetupConfig();
  const { applied } = await migrate(config.DATABASE_MIGRATION_URL, { log, ...migrationLockOptions(config) });
  log(`migrations: ${applied.length === 0 ? 'up to date' : applied.join(', ')}`);

  if (config.AUTHENTICATOR_PASSWORD) {
    await setAuthenticatorPassword(config.DATABASE_MIGRATION_URL, config.AUTHENTICATOR_PASSWORD);
    log('authenticator can log in');
  }

  const client = await connect(config);
  try {
    if (await ensureNamespace(client, config)) log(`namespace ${config.TEMPORAL_NAMESPACE} created (retention ${config.TEMPORAL_NAMESPACE_RETENTION_DAYS} days)`);
    // A namespace just created reaches every frontend's cache within seconds; retry until it has.
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        // The same registration the dev server uses: a name already registered with another type fails loudly.
        const added = await registerSearchAttributes(client.connection, config.TEMPORAL_NAMESPACE, customSearchAttributes);
        log(`search attributes: ${added.length === 0 ? 'up to date' : `added ${added.join(', ')}`}`);
        break;
      } catch (err) {
        if (grpcCode(err) !== grpcStatus.NOT_FOUND || Date.now() > deadline) throw err;
        await sleep(1_000);
      }
    }
  } finally {
    await client.connection.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof ConfigError ? err.message : `[setup] ${(err as Error).message}`);
    process.exit(1);
  },
);
