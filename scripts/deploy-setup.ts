/**
 * `npm run deploy:setup`: the one-shot job a deployment runs before the API and workers start
 * (docker/compose.yaml service `setup`, docker/k8s/setup-job.yaml). Idempotent:
 *
 * 1. applies database migrations as the schema owner (DATABASE_MIGRATION_URL);
 * 2. when AUTHENTICATOR_PASSWORD is set (self-hosted Postgres; Supabase manages this role),
 *    lets `authenticator`, the role the API and workers log in as, log in with it;
 * 3. registers the custom search attributes (workflows/search-attributes.ts) on the Temporal
 *    namespace (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE), adding only what is missing.
 */
import { Connection } from '@temporalio/client';
import { migrate } from '../lib/migrate.js';
import { customSearchAttributes } from '../workflows/search-attributes.js';
import { setAuthenticatorPassword } from './stack/app-database.js';
import { registerSearchAttributes } from './stack/temporal-server.js';

async function main(): Promise<void> {
  const migrationUrl = process.env.DATABASE_MIGRATION_URL;
  if (!migrationUrl) throw new Error('DATABASE_MIGRATION_URL is required (a role that owns the schema)');
  const { applied } = await migrate(migrationUrl, { log: (m) => console.log(`[setup] ${m}`) });
  console.log(`[setup] migrations: ${applied.length === 0 ? 'up to date' : applied.join(', ')}`);

  const password = process.env.AUTHENTICATOR_PASSWORD;
  if (password) {
    await setAuthenticatorPassword(migrationUrl, password);
    console.log('[setup] authenticator can log in');
  }

  const address = process.env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233';
  const namespace = process.env.TEMPORAL_NAMESPACE ?? 'default';
  const deadline = Date.now() + 120_000;
  let connection: Connection | undefined;
  while (!connection) {
    try {
      connection = await Connection.connect({ address, connectTimeout: 5_000 });
      await connection.workflowService.describeNamespace({ namespace });
    } catch (err) {
      await connection?.close();
      connection = undefined;
      if (Date.now() > deadline) throw new Error(`Temporal at ${address} (namespace ${namespace}) is not reachable: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 2_000));
    }
  }
  try {
    // The same registration the dev server uses: a name already registered with another type fails loudly.
    const added = await registerSearchAttributes(connection, namespace, customSearchAttributes);
    console.log(`[setup] search attributes: ${added.length === 0 ? 'up to date' : `added ${added.join(', ')}`}`);
  } finally {
    await connection.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`[setup] ${(err as Error).message}`);
    process.exit(1);
  },
);
