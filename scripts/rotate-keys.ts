import { rotateCredentialKeys } from '../integrations/crm/rotate-keys.js';
import { rotateOrgLlmKeys } from '../integrations/llm/rotate-org-keys.js';
import { keyringFromConfig } from '../lib/crypto.js';
import { createPool } from '../lib/db.js';
import { rotateEncryptedColumn } from '../lib/key-rotation.js';
import { webhookEndpointSecrets } from '../lib/org-events.js';

// Operator tooling: needs a role that may act as service_role (the migration role), because it
// rewrites every org's credentials; the application's authenticator cannot.
const url = process.env.DATABASE_MIGRATION_URL || process.env.DATABASE_URL;
if (!url) {
  console.error('Set DATABASE_MIGRATION_URL to the postgres:// URL of the schema owner.');
  process.exit(2);
}
const keyring = keyringFromConfig(process.env);
if (!keyring) {
  console.error('Set ENCRYPTION_KEYS (every key still in use, plus the new one) and ENCRYPTION_ACTIVE_KEY_ID (the new one).');
  process.exit(2);
}
const pool = createPool(url, { max: 2, applicationName: 'rotate-keys' });
try {
  // `--org <uuid>` (repeatable) limits the rotation to those orgs.
  const orgIds = process.argv.flatMap((arg, i) => (arg === '--org' && process.argv[i + 1] ? [process.argv[i + 1]!] : []));
  const { rotated, remaining, failed } = await rotateCredentialKeys(pool, keyring, orgIds.length > 0 ? { orgIds } : {});
  console.log(`Re-encrypted ${rotated} credential row(s) under key ${keyring.activeKeyId}; ${remaining} remaining.`);
  for (const f of failed) console.error(`Could not decrypt ${f.column} of connection ${f.connectionId} (org ${f.orgId}): ${f.reason}`);
  if (failed.length > 0) console.error(`${failed.length} row(s) failed: add their key to ENCRYPTION_KEYS or reconnect those connections, then run again.`);
  // Orgs' own LLM keys are under the same keyring.
  const llm = await rotateOrgLlmKeys(pool, keyring, orgIds.length > 0 ? { orgIds } : {});
  console.log(`Re-encrypted ${llm.rotated} org LLM key(s) under key ${keyring.activeKeyId}; ${llm.remaining} remaining.`);
  for (const f of llm.failed) console.error(`Could not decrypt the LLM key of org ${f.orgId}: ${f.reason}`);
  if (llm.failed.length > 0) console.error(`${llm.failed.length} org LLM key(s) failed: add their key to ENCRYPTION_KEYS or have those orgs set their key again, then run again.`);
  // Org webhook endpoints' signing secrets too.
  const hooks = await rotateEncryptedColumn(pool, keyring, webhookEndpointSecrets, orgIds.length > 0 ? { orgIds } : {});
  console.log(`Re-encrypted ${hooks.rotated} webhook endpoint secret(s) under key ${keyring.activeKeyId}; ${hooks.remaining} remaining.`);
  for (const f of hooks.failed) console.error(`Could not decrypt the secret of webhook endpoint ${f.rowId} (org ${f.orgId}): ${f.reason}`);
  if (hooks.failed.length > 0) console.error(`${hooks.failed.length} webhook endpoint secret(s) failed: add their key to ENCRYPTION_KEYS or have those orgs replace the endpoints, then run again.`);
  const clean = (r: { remaining: number; failed: unknown[] }) => r.remaining === 0 && r.failed.length === 0;
  process.exitCode = clean({ remaining, failed }) && clean(llm) && clean(hooks) ? 0 : 1;
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
} finally {
  await pool.end();
}
