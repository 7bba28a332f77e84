/**
 * Human handoff of a conversation: `requestHandoff` hands it to people (state on the run row,
 * a `handoff.requested` run event, a CRM task for the lead's responsible user, the org event
 * `handoff.requested`), `endHandoff` gives it back to the agent (a member's resume). Both are
 * called by the conversation workflow only (its own decisions and the updates the intake and the
 * API send), so every handoff is ordered with the conversation's turns.
 *
 * Exactly once: the request's `key` names its cause (the lead's message, the tool call, the
 * salesperson's message). The state change applies once per key, the CRM task is created under
 * the effect ledger with a key derived from it (a retry after the CRM accepted first looks for
 * its own task), and the org event's id derives from it.
 */
import { Context } from '@temporalio/activity';
import { ConnectionUnavailableError } from '../../integrations/crm/credentials.js';
import { CrmError } from '../../integrations/crm/http.js';
import type { CrmTarget } from '../../integrations/crm/types.js';
import type { HandoffReason } from '../../lib/agent-rules.js';
import { autocommitAsPrincipal, withPrincipal } from '../../lib/db.js';
import { toActivityFailure } from '../activity-failure.js';
import { runEffectOnce } from '../effects.js';
import type { RunRef, RunStep } from './contract.js';
import type { ResolvedAgentRunDeps } from './deps.js';
import { appendEvent, runGone, workerOf } from './run-store.js';

export interface HandoffRequest extends RunStep {
  reason: HandoffReason;
  /** The cause's id, unique within the conversation: `lead:<messageId>`, `tool:<seq>`, `salesperson:<deliveryId>`. */
  key: string;
}

// Our clock and the CRM's may disagree a little: a retried task looks this far before the attempt.
const CLOCK_SKEW_MS = 60_000;
/** When the task is due: soon, the lead is waiting. */
const TASK_DUE_MS = 15 * 60_000;

const reasonText: Record<HandoffReason, string> = {
  salesperson_replied: 'a salesperson wrote in the chat',
  lead_asked: 'the lead asked for a person',
  agent_requested: 'the AI agent asked for a person',
};

interface HandoffState {
  agent_id: string;
  thread_key: string | null;
  handoff_key: string | null;
  handoff_until: Date | null;
}

export function createHandoffActivities(deps: Pick<ResolvedAgentRunDeps, 'pool' | 'credentials' | 'events' | 'logger'>) {
  const { pool, credentials, events } = deps;

  async function requestHandoff(input: HandoffRequest): Promise<{ started: boolean; until: string | null }> {
    const state = await withPrincipal(pool, workerOf(input.orgId), async (tx) => {
      // Applies once per key, and never over a handoff that is still running (its task stands).
      await tx.query(
        `update public.agent_runs r
            set handoff_key = $3, handoff_reason = $4, handoff_at = now(),
                handoff_until = now() + make_interval(mins => a.handoff_minutes)
           from public.agents a
          where r.id = $1 and r.org_id = $2 and a.id = r.agent_id and a.org_id = r.org_id
            and (r.handoff_until is null or r.handoff_until <= now())
            and r.handoff_key is distinct from $3`,
        [input.runId, input.orgId, input.key, input.reason],
      );
      const { rows } = await tx.query<HandoffState>(
        `select agent_id, thread_key, handoff_key, handoff_until from public.agent_runs where id = $1 and org_id = $2`,
        [input.runId, input.orgId],
      );
      if (!rows[0]) throw runGone(input.runId);
      const mine = rows[0].handoff_key === input.key;
      await appendEvent(tx, input, 'handoff.requested', {
        reason: input.reason,
        started: mine,
        until: mine ? (rows[0].handoff_until?.toISOString() ?? null) : null,
      });
      return rows[0];
    });
    if (state.handoff_key !== input.key) return { started: false, until: null };

    const task = await createTask(input, state);
    const until = state.handoff_until?.toISOString() ?? null;
    await events?.publish({
      orgId: input.orgId,
      type: 'handoff.requested',
      cause: `${input.runId}:${input.key}`,
      data: { runId: input.runId, agentId: state.agent_id, reason: input.reason, until, crmTaskId: task.taskId },
    });
    return { started: true, until };
  }

  /**
   * The CRM task for the lead's responsible user, once (effect ledger). A conversation that is
   * not a lead's CRM thread gets none; a task the CRM refuses is logged, the handoff stands.
   */
  async function createTask(input: HandoffRequest, state: HandoffState): Promise<{ taskId: string | null }> {
    const thread = state.thread_key?.match(/^crm:([0-9a-f-]{36}):(.+)$/);
    if (!thread || !credentials) return { taskId: null };
    const [, connectionId, leadId] = thread as unknown as [string, string, string];
    const { result } = await runEffectOnce({ pool, orgId: input.orgId, runId: input.runId, toolName: 'handoff' }, `handoff-task:${input.runId}:${input.key}`, async () => {
      try {
        const { adapter } = await credentials.open({ orgId: input.orgId, connectionId });
        // The lead: a Kommo lead is a deal; HubSpot threads are about a contact.
        const target: CrmTarget = { objectType: adapter.provider === 'kommo' ? 'deals' : 'contacts', externalId: leadId };
        const known = await autocommitAsPrincipal<{ owner_id: string | null }>(
          pool,
          workerOf(input.orgId),
          `select owner_id from public.crm_records where connection_id = $1 and object_type = $2 and external_id = $3 and deleted_at is null`,
          [connectionId, target.objectType, target.externalId],
        );
        const ownerId = known.rows[0] ? known.rows[0].owner_id : ((await adapter.getRecord(target.objectType, target.externalId))?.ownerId ?? null);
        const text = `Take over the chat with this lead: ${reasonText[input.reason]}, so the AI agent stopped answering.`;
        const { attempt, firstScheduledMs } = activityAttempt();
        const earlier = attempt > 1 ? await adapter.findRecentWrite('task', target, text, new Date(firstScheduledMs - CLOCK_SKEW_MS)) : null;
        const created = earlier ?? (await adapter.createTask(target, { text, dueAt: new Date(Date.now() + TASK_DUE_MS), ownerId }));
        return { taskId: created.externalId, error: null };
      } catch (err) {
        if ((err instanceof CrmError && !err.retryable) || err instanceof ConnectionUnavailableError) {
          deps.logger?.warn({ runId: input.runId, err: (err as Error).message }, 'the CRM refused the handoff task');
          return { taskId: null, error: (err as Error).message.slice(0, 500) };
        }
        throw toActivityFailure(err);
      }
    });
    return { taskId: result.taskId };
  }

  /** A member gives the conversation back to the agent: true when a handoff was running. */
  async function endHandoff(ref: RunRef): Promise<{ resumed: boolean }> {
    const { rowCount } = await withPrincipal(pool, workerOf(ref.orgId), (tx) =>
      tx.query(`update public.agent_runs set handoff_until = null where id = $1 and org_id = $2 and handoff_until > now()`, [ref.runId, ref.orgId]),
    );
    return { resumed: rowCount === 1 };
  }

  return { requestHandoff, endHandoff };
}

/** Attempt number and first scheduling time of the activity (attempt 1 outside Temporal). */
function activityAttempt(): { attempt: number; firstScheduledMs: number } {
  try {
    const { info } = Context.current();
    return { attempt: info.attempt, firstScheduledMs: info.scheduledTimestampMs };
  } catch {
    return { attempt: 1, firstScheduledMs: Date.now() };
  }
}
