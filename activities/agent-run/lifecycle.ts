/** The run's lifecycle in Postgres: started, messages taken in, status changes, finished. */
import { ApplicationFailure } from '@temporalio/activity';
import { autocommitAsPrincipal, autocommitEachAsPrincipal, withPrincipal } from '../../lib/db.js';
import type { JsonValue } from '../effects.js';
import { NonRetryableFailureTypes } from '../failure-types.js';
import type { LiveRunStatus } from '../../lib/run-status.js';
import type { RunOutcome, RunRef, RunSettings, RunStep } from './contract.js';
import type { ResolvedAgentRunDeps } from './deps.js';
import { appendEvent, runGone, workerOf } from './run-store.js';

export function createLifecycleActivities({ pool, events }: Pick<ResolvedAgentRunDeps, 'pool' | 'events'>) {
  async function startRun(step: RunStep): Promise<RunSettings> {
    const db = autocommitEachAsPrincipal(pool, workerOf(step.orgId));
    // One statement, so one round trip: the status, the run.started event, and the org's run
    // count (only when the event is new, so a retried start counts once).
    const started = await db.query<{ max_steps: number; approval_timeout_seconds: number; busy_policy: RunSettings['busyPolicy'] }>(
      `with started as (
         update public.agent_runs r
            set status = 'running', started_at = coalesce(started_at, now())
           from public.agents a
          where r.id = $1 and r.org_id = $2 and r.status in ('queued', 'running')
            and a.id = r.agent_id and a.org_id = r.org_id
          returning a.max_steps, a.approval_timeout_seconds, a.busy_policy
       ),
       event as (
         insert into public.run_events (org_id, run_id, seq, type, payload)
         select $2, $1, $3, 'run.started', '{}'::jsonb where exists (select 1 from started)
         on conflict (run_id, seq) do nothing
         returning seq
       ),
       usage as (
         insert into public.usage_daily (org_id, day, shard, runs)
         select $2, (now() at time zone 'utc')::date, private.usage_shard($1), 1 where exists (select 1 from event)
         on conflict (org_id, day, shard) do update set runs = public.usage_daily.runs + 1
       )
       select max_steps, approval_timeout_seconds, busy_policy from started`,
      [step.runId, step.orgId, step.seq],
    );
    const settings = started.rows[0];
    if (!settings) {
      const existing = await db.query(`select status from public.agent_runs where id = $1 and org_id = $2`, [step.runId, step.orgId]);
      if (existing.rowCount === 1) {
        throw ApplicationFailure.nonRetryable(`Run ${step.runId} has already finished`, NonRetryableFailureTypes.runNotFound);
      }
      // The API commits the run row right after Temporal accepts the workflow, so the first
      // attempt may race that commit. Retryable; the workflow bounds the attempts.
      throw ApplicationFailure.retryable(`Run ${step.runId} is not visible in org ${step.orgId} (yet)`, 'RunNotVisible');
    }
    return { maxSteps: settings.max_steps, approvalTimeoutSeconds: settings.approval_timeout_seconds, busyPolicy: settings.busy_policy };
  }

  /** Takes a conversation message into the run's transcript (event `seq`, type user.message). */
  async function acceptMessage(step: RunStep & { messageId: string }): Promise<void> {
    await withPrincipal(pool, workerOf(step.orgId), async (tx) => {
      const { rows } = await tx.query<{ content: string; author: string | null; source: string }>(
        `select content, author, source from public.conversation_messages where id = $1 and run_id = $2 and org_id = $3`,
        [step.messageId, step.runId, step.orgId],
      );
      const message = rows[0];
      // The API commits the message before the update that delivers it; a missing row is a bug or a deleted run.
      if (!message) throw runGone(step.runId);
      await appendEvent(tx, step, 'user.message', { messageId: step.messageId, author: message.author, source: message.source, content: message.content });
      await tx.query(
        `update public.agent_runs set status = 'running' where id = $1 and org_id = $2 and status in ('running', 'sleeping')`,
        [step.runId, step.orgId],
      );
    });
  }

  async function setRunStatus(input: RunRef & { status: LiveRunStatus; event?: { seq: number; type: string; payload?: Record<string, JsonValue> } }): Promise<void> {
    await withPrincipal(pool, workerOf(input.orgId), async (tx) => {
      await tx.query(
        `update public.agent_runs set status = $3 where id = $1 and org_id = $2 and status in ('running', 'awaiting_approval', 'sleeping')`,
        [input.runId, input.orgId, input.status],
      );
      if (input.event) await appendEvent(tx, { ...input, seq: input.event.seq }, input.event.type, { ...input.event.payload, status: input.status });
    });
  }

  async function finishRun(step: RunStep & { outcome: RunOutcome }): Promise<void> {
    const { outcome } = step;
    // One statement, so one round trip: the run's final state, its pending approvals cancelled
    // (nobody can decide for a run that has ended) and the run.<status> event. A completed run's
    // output is the content of its final answer; a failed or cancelled run keeps what it had.
    // A run that has already finished keeps its outcome and gets no second run.<status> event:
    // a later execution (one Temporal started again after losing the first) must not rewrite
    // what clients have read. A retry of this statement finds its own write done, which is the same.
    await autocommitAsPrincipal(
      pool,
      workerOf(step.orgId),
      `with run as (
         update public.agent_runs r
            set status = $3, completed_at = now(), error = $4, reserved_tokens = 0, reserved_seq = null,
                output = case when $3 = 'completed'
                              then (select e.payload->>'content' from public.run_events e where e.run_id = r.id and e.seq = $5)
                              else r.output end
          where r.id = $1 and r.org_id = $2 and r.status not in ('completed', 'failed', 'cancelled')
          returning r.id
       ),
       approvals as (
         update public.run_approvals set status = 'cancelled', decided_at = now()
          where run_id = $1 and org_id = $2 and status = 'pending'
       )
       insert into public.run_events (org_id, run_id, seq, type, payload)
       select $2, $1, $6, $7, $8 where exists (select 1 from run)
       on conflict (run_id, seq) do nothing`,
      [
        step.runId,
        step.orgId,
        outcome.status,
        outcome.status === 'failed' ? outcome.error : null,
        outcome.status === 'completed' ? outcome.outputSeq : null,
        step.seq,
        `run.${outcome.status}`,
        outcome.status === 'failed' ? { error: outcome.error } : {},
      ],
    );
    if (outcome.status === 'failed' && events) {
      // After the commit, keyed by the run: a retried finish tells people once.
      // Only when the run's stored outcome is this failure: a run that had already finished
      // otherwise (a second execution's failure) tells nobody it failed.
      const { rows } = await autocommitAsPrincipal<{ agent_id: string; status: string }>(pool, workerOf(step.orgId), `select agent_id, status from public.agent_runs where id = $1 and org_id = $2`, [step.runId, step.orgId]);
      if (rows[0]?.status !== 'failed') return;
      await events.publish({
        orgId: step.orgId,
        type: 'run.failed',
        cause: step.runId,
        data: { runId: step.runId, agentId: rows[0]?.agent_id ?? null, error: { type: outcome.error.type, message: outcome.error.message } },
      });
    }
  }

  return { startRun, acceptMessage, setRunStatus, finishRun };
}
