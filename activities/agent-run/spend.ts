/**
 * The org's daily token quota, enforced around each LLM call: reserve before, settle after
 * (issue 12, item 4). A call is admitted only while the org's tokens today plus the tokens its
 * other runs have reserved for calls in flight are below the quota; the admission and the
 * reservation happen under a per-org transaction lock, so concurrent runs see each other's
 * reservations. The reservation is replaced by the call's real usage in the statement that
 * records the call (llm-step.ts), released when the call fails, and cleared when the run
 * finishes. No transaction is open while the model answers.
 */
import { ApplicationFailure } from '@temporalio/activity';
import type pg from 'pg';
import { withPrincipal } from '../../lib/db.js';
import type { SpendSettings } from '../../lib/spend.js';
import { NonRetryableFailureTypes } from '../failure-types.js';
import type { RunStep } from './contract.js';
import { workerOf } from './run-store.js';

/**
 * What one call may use, at most as far as we can tell before making it: the answer's cap plus
 * the prompt at three characters a token (fewer than the usual four, so text in Cyrillic or code
 * is not underestimated). The overshoot bound is one such call.
 */
export function estimateCallTokens(prompt: unknown, maxOutputTokens: number): number {
  return Math.ceil(JSON.stringify(prompt).length / 3) + maxOutputTokens;
}

/** Reserves `tokens` for the run's call `step.seq`, or fails the run with OrgDailyQuotaExceeded. */
export async function reserveCallTokens(pool: pg.Pool, spend: SpendSettings, step: RunStep, tokens: number): Promise<void> {
  await withPrincipal(pool, workerOf(step.orgId), async (tx) => {
    await tx.query(`select pg_advisory_xact_lock(hashtextextended('llm-quota:' || $1::text, 0))`, [step.orgId]);
    const { rows } = await tx.query<{ quota: string; committed: string; reserved_seq: number | null }>(
      `select coalesce(o.daily_token_quota, $3::bigint) as quota,
              coalesce((select sum(u.input_tokens + u.output_tokens) from public.usage_daily u
                         where u.org_id = o.id and u.day = (now() at time zone 'utc')::date), 0)
              + coalesce((select sum(r.reserved_tokens) from public.agent_runs r
                           where r.org_id = o.id and r.reserved_tokens > 0 and r.id <> $2), 0) as committed,
              (select r.reserved_seq from public.agent_runs r where r.id = $2 and r.org_id = o.id) as reserved_seq
         from public.organizations o where o.id = $1`,
      [step.orgId, step.runId, spend.orgDailyTokenQuotaDefault],
    );
    const state = rows[0];
    // A retried call keeps the reservation its first attempt made.
    if (!state || state.reserved_seq === step.seq) return;
    if (BigInt(state.committed) >= BigInt(state.quota)) {
      throw ApplicationFailure.nonRetryable(
        `The organization used or reserved ${state.committed} tokens today, reaching its daily quota of ${state.quota}`,
        NonRetryableFailureTypes.orgQuotaExceeded,
      );
    }
    await tx.query(`update public.agent_runs set reserved_tokens = $3, reserved_seq = $4 where id = $1 and org_id = $2`, [step.runId, step.orgId, tokens, step.seq]);
  });
}

/** Gives back the reservation of call `step.seq` when it failed (a retry reserves again). */
export async function releaseCallTokens(pool: pg.Pool, step: RunStep): Promise<void> {
  await withPrincipal(pool, workerOf(step.orgId), (tx) =>
    tx.query(`update public.agent_runs set reserved_tokens = 0, reserved_seq = null where id = $1 and org_id = $2 and reserved_seq = $3`, [step.runId, step.orgId, step.seq]),
  );
}
