/**
 * Re-encrypts every org's own LLM key (org_llm_provider_keys) under the active key, the way
 * lib/key-rotation.ts rotates any single encrypted column; a key that does not decrypt is left
 * as it is and reported by org. Old keys must stay in ENCRYPTION_KEYS until this reports zero
 * remaining rows.
 */
import type pg from 'pg';
import type { Keyring } from '../../lib/crypto.js';
import { rotateEncryptedColumn } from '../../lib/key-rotation.js';

export interface OrgKeyRotationResult {
  rotated: number;
  /** Rows still not under the active key (failed rows included). */
  remaining: number;
  /** Why a row did not decrypt; never the value. */
  failed: Array<{ orgId: string; reason: string }>;
}

// One key per org: the row id in its AAD is the org id (api/services/llm-provider.ts writes it so).
const orgLlmKeys = { table: 'org_llm_provider_keys', idColumn: 'org_id', column: 'api_key' };

export async function rotateOrgLlmKeys(pool: pg.Pool, keyring: Keyring, opts: { batchSize?: number; orgIds?: string[] } = {}): Promise<OrgKeyRotationResult> {
  const result = await rotateEncryptedColumn(pool, keyring, orgLlmKeys, opts);
  return { ...result, failed: result.failed.map(({ orgId, reason }) => ({ orgId, reason })) };
}
