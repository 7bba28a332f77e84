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
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes.js';
import pg from 'pg';
import { migrate } from '../lib/migrate.js';
import { customSearchAttributes } from '../workflows/search-attributes.js';

const KIND_TO_ENCODING = {
  Keyword: 'KEYWORD',
  Text: 'TEXT',
  Int: 'INT',
  Double: 'DOUBLE',
  Bool: 'BOOL',
  Datetime: 'DATETIME',
  KeywordList: 'KEYWORD_LIST',
} as const;

async function main(): Promise<void> {
  const migrationUrl = process.env.DATABASE_MIGRATION_URL;
  if (!migrationUrl) throw new Error('DATABASE_MIGRATION_URL is required (a role that owns the schema)');
  const { applied } = await migrate(migrationUrl, { log: (m) => console.log(`[setup] ${m}`) });
  console.log(`[setup] migrations: ${applied.length === 0 ? 'up to date' : applied.join(', ')}`);

  const password = process.env.AUTHENTICATOR_PASSWORD;
  if (password) {
    const client = new pg.Client({ connectionString: migrationUrl });
    await client.connect();
    try {
      await client.query(`alter role authenticator with login password ${client.escapeLiteral(password)}`);
    } finally {
      await client.end();
    }
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
    const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
    const missing: Record<string, number> = {};
    for (const [name, kind] of Object.entries(customSearchAttributes)) {
      if (customAttributes?.[name] === undefined) missing[name] = encodeSearchAttributeIndexedValueType(KIND_TO_ENCODING[kind])!;
    }
    if (Object.keys(missing).length > 0) await connection.operatorService.addSearchAttributes({ namespace, searchAttributes: missing });
    console.log(`[setup] search attributes: ${Object.keys(missing).length === 0 ? 'up to date' : `added ${Object.keys(missing).join(', ')}`}`);
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
