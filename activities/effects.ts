import type pg from 'pg';
import { withPrincipal, type Tx } from '../lib/db.js';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export interface EffectScope {
  pool: pg.Pool;
  orgId: string;
  runId?: string;
  /** What performed the effect, for people reading the ledger (a tool name). */
  toolName: string;
}

/**
 * Side effects exactly once. `key` is `${workflowId}:${activityId}` of the activity performing
 * the effect (Context.current().info), which is identical across retries of that activity and
 * unique within the workflow (the agent run gives tool activities explicit ids that survive
 * continue-as-new). In one org-scoped transaction:
 *
 * 1. take a transaction-level advisory lock on the key, so two attempts running at once (a
 *    heartbeat timeout while the first attempt is still alive) serialize;
 * 2. if the ledger holds the key, return the recorded result without acting (`replayed: true`);
 * 3. otherwise run `effect(tx)` and record its result under the key, committing both together.
 *
 * Effects inside our database (writes through `tx`) are thereby atomic with their ledger row.
 * Effects on external systems (a CRM write) must additionally send `key` as the provider's
 * idempotency key or natural key: a crash after the provider acted but before the commit makes
 * the next attempt call the provider again, and only the provider can deduplicate that call.
 */
export async function runEffectOnce<T extends JsonValue>(
  scope: EffectScope,
  key: string,
  effect: (tx: Tx) => Promise<T>,
): Promise<{ result: T; replayed: boolean }> {
  return withPrincipal(scope.pool, { kind: 'worker', orgId: scope.orgId }, async (tx) => {
    await tx.query(`select pg_advisory_xact_lock(hashtextextended($1, 0))`, [`effect:${scope.orgId}:${key}`]);
    const recorded = await tx.query<{ result: T }>(
      `select result from public.effect_ledger where org_id = $1 and idempotency_key = $2`,
      [scope.orgId, key],
    );
    if (recorded.rows[0]) return { result: recorded.rows[0].result, replayed: true };
    const result = await effect(tx);
    await tx.query(
      `insert into public.effect_ledger (org_id, idempotency_key, run_id, tool_name, result) values ($1, $2, $3, $4, $5)`,
      [scope.orgId, key, scope.runId ?? null, scope.toolName, JSON.stringify(result ?? null)],
    );
    return { result, replayed: false };
  });
}
