/**
 * `npm run knowledge:backfill [-- --org <uuid> ...]`: ingests every knowledge document that has no
 * chunks (see scripts/knowledge/backfill.ts). Run once after deploying chunk search; running it
 * again is harmless.
 */
import { loadTemporalToolConfig } from '../lib/config.js';
import { createPool } from '../lib/db.js';
import { createTemporalClient } from '../lib/temporal.js';
import { codecKeyringFrom, createDataConverter } from '../lib/temporal-codec.js';
import { backfillKnowledgeChunks } from './knowledge/backfill.js';

// Operator tooling: reads every org's documents, so it needs the schema owner (service_role).
const url = process.env.DATABASE_MIGRATION_URL || process.env.DATABASE_URL;
if (!url) {
  console.error('Set DATABASE_MIGRATION_URL to the postgres:// URL of the schema owner.');
  process.exit(2);
}
const pool = createPool(url, { max: 2, applicationName: 'knowledge-backfill' });
const config = loadTemporalToolConfig();
// Workflow arguments are encrypted like the API's when the deployment encrypts payloads.
const temporal = await createTemporalClient(config, { dataConverter: createDataConverter(codecKeyringFrom(config)) });
try {
  const orgIds = process.argv.flatMap((arg, i) => (arg === '--org' && process.argv[i + 1] ? [process.argv[i + 1]!] : []));
  const { started, alreadyRunning } = await backfillKnowledgeChunks({ pool, temporal, ...(orgIds.length > 0 ? { orgIds } : {}), log: console.log });
  console.log(`Started ${started} ingestion(s); ${alreadyRunning} were already running. Statuses: GET /v1/orgs/<org>/knowledge.`);
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
} finally {
  await temporal.connection.close();
  await pool.end();
}
