/**
 * Re-encrypts every org's own LLM key (org_llm_provider_keys) under the active key, like
 * integrations/crm/rotate-keys.ts does for CRM credentials: small batches with `for update skip
 * locked`, a key that does not decrypt is left as it is and reported by org, and the rotation
 * goes on. Old keys must stay in ENCRYPTION_KEYS until this reports zero remaining rows.
 */
import type pg from 'pg';
import { decryptSecret, encryptSecret, type Keyring } from '../../lib/crypto.js';
import { withServiceRole } from '../../lib/db.js';
import { ORG_LLM_KEY_COLUMN } from '../../lib/org-llm.js';

export interface OrgKeyRotationResult {
  rotated: number;
  /** Rows still not under the active key (failed rows included). */
  remaining: number;
  /** Why a row did not decrypt; never the value. */
  failed: Array<{ orgId: string; reason: string }>;
}

const pending = `api_key not like $1 || '%' and ($2::uuid[] is null or org_id = any($2::uuid[]))`;

export async function rotateOrgLlmKeys(pool: pg.Pool, keyring: Keyring, opts: { batchSize?: number; orgIds?: string[] } = {}): Promise<OrgKeyRotationResult> {
  const prefix = `v1.${keyring.activeKeyId}.`;
  const scope = opts.orgIds ?? null;
  const failed = new Map<string, string>();
  let rotated = 0;
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const batch = await withServiceRole(pool, async (tx) => {
      const { rows } = await tx.query<{ org_id: string; api_key: string }>(
        `select org_id, api_key from public.org_llm_provider_keys where ${pending} and org_id > $3::uuid
          order by org_id limit $4 for update skip locked`,
        [prefix, scope, after, opts.batchSize ?? 100],
      );
      for (const row of rows) {
        const ctx = { orgId: row.org_id, rowId: row.org_id, column: ORG_LLM_KEY_COLUMN };
        try {
          const next = encryptSecret(keyring, decryptSecret(keyring, row.api_key, ctx), ctx);
          await tx.query(`update public.org_llm_provider_keys set api_key = $2 where org_id = $1`, [row.org_id, next]);
          rotated++;
        } catch (err) {
          failed.set(row.org_id, err instanceof Error ? err.message : String(err));
        }
      }
      return { size: rows.length, last: rows.at(-1)?.org_id };
    });
    if (!batch.last || batch.size < (opts.batchSize ?? 100)) break;
    after = batch.last;
  }
  const { rows } = await withServiceRole(pool, (tx) => tx.query<{ n: number }>(`select count(*)::int as n from public.org_llm_provider_keys where ${pending}`, [prefix, scope]));
  return { rotated, remaining: rows[0]?.n ?? 0, failed: [...failed].map(([orgId, reason]) => ({ orgId, reason })) };
}
