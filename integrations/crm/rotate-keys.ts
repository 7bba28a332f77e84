/**
 * Re-encrypts every stored CRM credential under the active key, while the service runs. Rows are
 * taken in small batches with `for update skip locked`: a token refresh holding a row's lock is
 * never blocked by the rotation (the row is picked up by a later pass), and a refresh that
 * starts afterwards sees the re-encrypted value. Old keys must stay in ENCRYPTION_KEYS until
 * this reports zero remaining rows.
 *
 * One bad row never stops the rotation: a value that does not decrypt (a key missing from the
 * keyring, a corrupted or foreign envelope) is left as it is, reported by connection id, and
 * the rotation goes on with the next row. The CLI exits non-zero when any row failed.
 */
import type pg from 'pg';
import { decryptSecret, encryptSecret, keyIdOf, type Keyring } from '../../lib/crypto.js';
import { withServiceRole } from '../../lib/db.js';

const columns = ['access_token', 'refresh_token'] as const;

export interface RotationFailure {
  orgId: string;
  connectionId: string;
  column: (typeof columns)[number];
  /** Why it did not decrypt; never contains the value. */
  reason: string;
}

export interface RotationResult {
  rotated: number;
  /** Rows still not under the active key (failed rows included). */
  remaining: number;
  failed: RotationFailure[];
}

export interface RotationOptions {
  batchSize?: number;
  /** Only these orgs' credentials (an operator fixing one tenant; tests, which share a database). */
  orgIds?: string[];
  /** Passes over the table; rows locked by a refresh during one pass are retried in the next. */
  maxPasses?: number;
}

const pending = `(access_token not like $1 || '%' or (refresh_token is not null and refresh_token not like $1 || '%'))
  and ($2::uuid[] is null or org_id = any($2::uuid[]))`;

export async function rotateCredentialKeys(pool: pg.Pool, keyring: Keyring, opts: RotationOptions = {}): Promise<RotationResult> {
  const batchSize = opts.batchSize ?? 100;
  const prefix = `v1.${keyring.activeKeyId}.`;
  const scope = opts.orgIds ?? null;
  const failed = new Map<string, RotationFailure>();
  let rotated = 0;

  for (let pass = 0; pass < (opts.maxPasses ?? 5); pass++) {
    let after = '00000000-0000-0000-0000-000000000000';
    let rotatedThisPass = 0;
    // Keyset over connection_id: rows that failed stay behind without being read again.
    for (;;) {
      const batch = await withServiceRole(pool, async (tx) => {
        const { rows } = await tx.query<{ org_id: string; connection_id: string; access_token: string; refresh_token: string | null }>(
          `select org_id, connection_id, access_token, refresh_token from public.crm_credentials
            where ${pending} and connection_id > $3::uuid and not (connection_id = any($4::uuid[]))
            order by connection_id limit $5 for update skip locked`,
          [prefix, scope, after, [...failed.keys()], batchSize],
        );
        let done = 0;
        for (const row of rows) {
          const next: Record<string, string | null> = {};
          let rowFailed = false;
          for (const column of columns) {
            const value = row[column];
            try {
              if (value === null || keyIdOf(value) === keyring.activeKeyId) {
                next[column] = value;
                continue;
              }
              const ctx = { orgId: row.org_id, rowId: row.connection_id, column: `crm_credentials.${column}` };
              next[column] = encryptSecret(keyring, decryptSecret(keyring, value, ctx), ctx);
            } catch (err) {
              failed.set(row.connection_id, { orgId: row.org_id, connectionId: row.connection_id, column, reason: err instanceof Error ? err.message : String(err) });
              rowFailed = true;
              break;
            }
          }
          if (rowFailed) continue;
          await tx.query(`update public.crm_credentials set access_token = $2, refresh_token = $3 where connection_id = $1`, [row.connection_id, next.access_token, next.refresh_token]);
          done++;
        }
        return { size: rows.length, done, last: rows.at(-1)?.connection_id };
      });
      rotated += batch.done;
      rotatedThisPass += batch.done;
      if (!batch.last || batch.size < batchSize) break;
      after = batch.last;
    }
    // Another pass only helps when rows were skipped (locked by a refresh) and this pass made progress.
    if ((await countPending(pool, prefix, scope)) <= failed.size || rotatedThisPass === 0) break;
  }
  return { rotated, remaining: await countPending(pool, prefix, scope), failed: [...failed.values()] };
}

async function countPending(pool: pg.Pool, prefix: string, scope: string[] | null): Promise<number> {
  const { rows } = await withServiceRole(pool, (tx) =>
    tx.query<{ n: number }>(`select count(*)::int as n from public.crm_credentials where ${pending}`, [prefix, scope]),
  );
  return rows[0]?.n ?? 0;
}
