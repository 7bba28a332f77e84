/**
 * Re-encrypts one encrypted column of one table under the keyring's active key, while the
 * service runs: small batches with `for update skip locked` (a writer holding a row is never
 * blocked; the row is left for the next run), keyset over the row id so a row that does not
 * decrypt (a key missing from the keyring, a corrupted or foreign envelope) is read once, left as
 * it is and reported, and the rotation goes on. Old keys must stay in ENCRYPTION_KEYS until this
 * reports zero remaining rows. CRM credentials (two columns per row, refreshed concurrently) have
 * their own loop in integrations/crm/rotate-keys.ts.
 */
import type pg from 'pg';
import { decryptSecret, encryptSecret, type Keyring } from './crypto.js';
import { withServiceRole } from './db.js';

/** A column holding one `lib/crypto.ts` envelope per row, AAD bound to org, row id and `table.column`. */
export interface EncryptedColumn {
  table: string;
  /** The uuid the AAD binds as the row id (and the keyset order). */
  idColumn: string;
  column: string;
}

export interface ColumnRotationResult {
  rotated: number;
  /** Rows still not under the active key (failed rows included). */
  remaining: number;
  /** Why a row did not decrypt; never the value. */
  failed: Array<{ orgId: string; rowId: string; reason: string }>;
}

export interface ColumnRotationOptions {
  batchSize?: number;
  /** Only these orgs' rows (an operator fixing one tenant; tests, which share a database). */
  orgIds?: string[];
}

export async function rotateEncryptedColumn(pool: pg.Pool, keyring: Keyring, target: EncryptedColumn, opts: ColumnRotationOptions = {}): Promise<ColumnRotationResult> {
  const { table, idColumn, column } = target;
  const batchSize = opts.batchSize ?? 100;
  const prefix = `v1.${keyring.activeKeyId}.`;
  const scope = opts.orgIds ?? null;
  // Identifiers come from the callers' constants, never from input.
  const pending = `${column} not like $1 || '%' and ($2::uuid[] is null or org_id = any($2::uuid[]))`;
  const failed: ColumnRotationResult['failed'] = [];
  let rotated = 0;
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const batch = await withServiceRole(pool, async (tx) => {
      const { rows } = await tx.query<{ org_id: string; row_id: string; value: string }>(
        `select org_id, ${idColumn} as row_id, ${column} as value from public.${table}
          where ${pending} and ${idColumn} > $3::uuid order by ${idColumn} limit $4 for update skip locked`,
        [prefix, scope, after, batchSize],
      );
      for (const row of rows) {
        const ctx = { orgId: row.org_id, rowId: row.row_id, column: `${table}.${column}` };
        try {
          const next = encryptSecret(keyring, decryptSecret(keyring, row.value, ctx), ctx);
          await tx.query(`update public.${table} set ${column} = $2 where ${idColumn} = $1`, [row.row_id, next]);
          rotated++;
        } catch (err) {
          failed.push({ orgId: row.org_id, rowId: row.row_id, reason: err instanceof Error ? err.message : String(err) });
        }
      }
      return { size: rows.length, last: rows.at(-1)?.row_id };
    });
    if (!batch.last || batch.size < batchSize) break;
    after = batch.last;
  }
  const { rows } = await withServiceRole(pool, (tx) => tx.query<{ n: number }>(`select count(*)::int as n from public.${table} where ${pending}`, [prefix, scope]));
  return { rotated, remaining: rows[0]?.n ?? 0, failed };
}
