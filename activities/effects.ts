import { Context } from '@temporalio/activity';
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

/** How long a claim keeps a concurrent attempt waiting outside an activity (scripts, direct use). */
const DEFAULT_LEASE_MS = 60_000;
const WAIT_STEP_MS = 500;

type Claim<T> = { kind: 'done'; result: T } | { kind: 'busy' } | { kind: 'claimed' };

/**
 * Side effects exactly once. `key` is `${workflowId}:${activityId}` of the activity performing
 * the effect (Context.current().info), which is identical across retries of that activity and
 * unique within the workflow (the agent run gives tool activities explicit ids that survive
 * continue-as-new). Two short org-scoped transactions, none open across `effect`:
 *
 * 1. claim: under an advisory lock on the key, a completed ledger row returns its recorded result
 *    without acting (`replayed: true`); an open claim whose lease is running means another
 *    attempt of the same activity is acting (a heartbeat timeout while it is still alive): wait
 *    for it; otherwise claim the key (or take over an expired claim) for the activity's
 *    heartbeat timeout, renewed while the call runs, so a killed attempt's claim lapses about
 *    when Temporal retries it;
 * 2. `effect()`, the external call, with no transaction and no pooled connection held;
 * 3. complete: `record(tx, result)` (our own database writes that follow the effect) and the
 *    result, committed together.
 *
 * A crash after the provider acted but before step 3 leaves an open claim, and the next attempt
 * calls the provider again: effects on external systems must send `key` as the provider's
 * idempotency key or look for their own earlier write on a retry (the CRM tools do), since only
 * the provider can deduplicate that call.
 */
export async function runEffectOnce<T extends JsonValue>(
  scope: EffectScope,
  key: string,
  effect: () => Promise<T>,
  record?: (tx: Tx, result: T) => Promise<void>,
): Promise<{ result: T; replayed: boolean }> {
  const worker = { kind: 'worker', orgId: scope.orgId } as const;
  const leaseMs = activityLeaseMs();
  for (;;) {
    const claim = await withPrincipal(scope.pool, worker, async (tx): Promise<Claim<T>> => {
      await tx.query(`select pg_advisory_xact_lock(hashtextextended($1, 0))`, [`effect:${scope.orgId}:${key}`]);
      const { rows } = await tx.query<{ result: T; completed: boolean; leased: boolean }>(
        `select result, completed_at is not null as completed, coalesce(lease_until > now(), false) as leased
           from public.effect_ledger where org_id = $1 and idempotency_key = $2`,
        [scope.orgId, key],
      );
      const row = rows[0];
      if (row?.completed) return { kind: 'done', result: row.result };
      if (row?.leased) return { kind: 'busy' };
      if (row) {
        await tx.query(
          `update public.effect_ledger set lease_until = now() + make_interval(secs => $3::double precision / 1000)
            where org_id = $1 and idempotency_key = $2`,
          [scope.orgId, key, leaseMs],
        );
      } else {
        await tx.query(
          `insert into public.effect_ledger (org_id, idempotency_key, run_id, tool_name, completed_at, lease_until)
           values ($1, $2, $3, $4, null, now() + make_interval(secs => $5::double precision / 1000))`,
          [scope.orgId, key, scope.runId ?? null, scope.toolName, leaseMs],
        );
      }
      return { kind: 'claimed' };
    });
    if (claim.kind === 'done') return { result: claim.result, replayed: true };
    if (claim.kind === 'claimed') break;
    // Another attempt holds the claim: wait for its result (or its lease to run out), alive.
    heartbeatIfInActivity();
    await new Promise((resolve) => setTimeout(resolve, WAIT_STEP_MS));
  }
  // The claim lives as long as this attempt does: renewed while the call runs, it lapses about
  // when Temporal, missing our heartbeats, schedules the next attempt.
  const renew = setInterval(() => {
    void withPrincipal(scope.pool, worker, (tx) =>
      tx.query(
        `update public.effect_ledger set lease_until = now() + make_interval(secs => $3::double precision / 1000)
          where org_id = $1 and idempotency_key = $2 and completed_at is null`,
        [scope.orgId, key, leaseMs],
      ),
    ).catch(() => undefined);
  }, Math.max(Math.floor(leaseMs / 3), 250));
  let result: T;
  try {
    result = await effect();
  } catch (err) {
    clearInterval(renew);
    // A failed call releases its claim, so the retry acts at once instead of waiting the lease out.
    await withPrincipal(scope.pool, worker, (tx) =>
      tx.query(`update public.effect_ledger set lease_until = null where org_id = $1 and idempotency_key = $2 and completed_at is null`, [scope.orgId, key]),
    ).catch(() => undefined);
    throw err;
  }
  clearInterval(renew);
  await withPrincipal(scope.pool, worker, async (tx) => {
    if (record) await record(tx, result);
    await tx.query(
      `update public.effect_ledger set result = $3, completed_at = now(), lease_until = null
        where org_id = $1 and idempotency_key = $2 and completed_at is null`,
      [scope.orgId, key, JSON.stringify(result ?? null)],
    );
  });
  return { result, replayed: false };
}

/** The attempt's heartbeat timeout (after which Temporal retries it), else its start-to-close timeout. */
function activityLeaseMs(): number {
  try {
    const { info } = Context.current();
    return info.heartbeatTimeoutMs || info.startToCloseTimeoutMs || DEFAULT_LEASE_MS;
  } catch {
    return DEFAULT_LEASE_MS; // not inside an activity (scripts, unit use)
  }
}

function heartbeatIfInActivity(): void {
  try {
    const ctx = Context.current();
    if (!ctx.info.isLocal) ctx.heartbeat();
  } catch {
    // not inside an activity
  }
}
