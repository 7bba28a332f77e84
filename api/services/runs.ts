import {
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
  type Client,
} from '@temporalio/client';
import type pg from 'pg';
import { autocommitAsPrincipal, withPrincipal, type Tx } from '../../lib/db.js';
import type { HandoffReason } from '../../lib/agent-rules.js';
import type { Principal } from '../../lib/principal.js';
import { finalRunStatusSchema, type RunStatus } from '../../lib/run-status.js';
import { AgentIdSearchAttribute, OrgIdSearchAttribute } from '../../workflows/search-attributes.js';
import { AGENT_RUNS_TASK_QUEUE, agentRunWorkflowId, CONVERSATION_MEMO } from '../../workflows/task-queues.js';
import { createRunDispatcher, type RunDispatcher } from './run-dispatch.js';
import { callTemporal, DEFAULT_TEMPORAL_CALL_DEADLINE_MS, isTemporalUnanswered } from './temporal-calls.js';
import { WithStartWorkflowOperation } from '@temporalio/client';
import { decideApprovalUpdate, postMessageUpdate, resumeConversationUpdate, resumeFollowUpUpdate, agentRun, type ApprovalState } from '../../workflows/agent-run/index.js';
import { cursorAt, decodeCursor, toPage, type KeysetRow } from '../pagination.js';
import { notFound, ProblemError } from '../problems.js';
import { requireOrgRole } from './org-access.js';
import { updateRefusedProblem } from './update-refusals.js';

export interface RunServiceDeps {
  pool: pg.Pool;
  temporal: Client;
  /** Tests give each suite its own queue so parallel suites never run each other's workflows. */
  taskQueue?: string;
  /** A conversation without messages for this long ends (default 7 days). */
  conversationIdleTimeoutSeconds?: number;
  /**
   * How long a request waits for a workflow to accept an Update (an approval decision, a
   * conversation message). Updates need a worker; without one the client would wait forever,
   * so a worker outage becomes a 503 the caller can retry instead of a hung request.
   */
  updateDeadlineMs?: number;
  /** How long a start or a cancel waits for Temporal (default 5 s); then the request answers 503. */
  temporalDeadlineMs?: number;
  /** Starts task runs' workflows after their rows commit; built from the other deps when absent. */
  dispatcher?: RunDispatcher;
}

export interface RunView {
  id: string;
  orgId: string;
  agentId: string;
  status: RunStatus;
  workflowId: string;
  output: string | null;
  error: { type: string; message: string } | null;
  usage: { inputTokens: number; outputTokens: number; llmCalls: number; costUsd: number };
  createdAt: string;
  startedAt: string | null;
  completedAt: string | null;
  /** Set while the conversation needs a person (its reply could not reach the lead); cleared by acknowledging it. */
  attention: { reason: 'reply_failed'; detail: string; since: string } | null;
  handoff: { reason: HandoffReason; since: string; until: string } | null;
}

interface RunRow {
  id: string;
  org_id: string;
  agent_id: string;
  status: RunView['status'];
  workflow_id: string;
  input: string;
  output: string | null;
  error: RunView['error'];
  input_tokens: number;
  output_tokens: number;
  llm_calls: number;
  cost_usd: string;
  created_at: Date;
  started_at: Date | null;
  completed_at: Date | null;
  dispatched_at: Date | null;
  /** Only where the query selects `attentionColumn`. */
  attention?: { reason: 'reply_failed'; detail: string; since: string } | null;
  handoff_until: Date | null;
  handoff_reason: HandoffReason | null;
  handoff_at: Date | null;
}

const runColumns = `id, org_id, agent_id, status, workflow_id, input, output, error, input_tokens, output_tokens, llm_calls, cost_usd, created_at, started_at, completed_at, dispatched_at, handoff_until, handoff_reason, handoff_at`;

// The run's needs-attention flag (public.run_attention), as JSON, for the reads that show a run.
const attentionColumn = `(select json_build_object('reason', a.reason, 'detail', a.detail, 'since', a.since)
    from public.run_attention a where a.run_id = agent_runs.id and a.org_id = agent_runs.org_id) as attention`;

const TERMINAL: ReadonlySet<RunStatus> = new Set(finalRunStatusSchema.options);

function toView(row: RunRow): RunView {
  return {
    id: row.id,
    orgId: row.org_id,
    agentId: row.agent_id,
    status: row.status,
    workflowId: row.workflow_id,
    output: row.output,
    error: row.error,
    usage: { inputTokens: row.input_tokens, outputTokens: row.output_tokens, llmCalls: row.llm_calls, costUsd: Number(row.cost_usd) },
    createdAt: row.created_at.toISOString(),
    startedAt: row.started_at?.toISOString() ?? null,
    completedAt: row.completed_at?.toISOString() ?? null,
    attention: row.attention ? { ...row.attention, since: new Date(row.attention.since).toISOString() } : null,
    handoff:
      row.handoff_until && row.handoff_until.getTime() > Date.now() && row.handoff_reason && row.handoff_at
        ? { reason: row.handoff_reason, since: row.handoff_at.toISOString(), until: row.handoff_until.toISOString() }
        : null,
  };
}

export interface StartRunRequest {
  orgId: string;
  agentId: string;
  input: string;
  idempotencyKey?: string;
}

const agentPaused = () => new ProblemError('agent-paused', 'The agent is paused: it starts nothing until an admin sets its status to active.');

export function createRunService(deps: RunServiceDeps) {
  const withUpdateDeadline = <T>(fn: () => Promise<T>): Promise<T> =>
    deps.temporal.connection.withDeadline(Date.now() + (deps.updateDeadlineMs ?? 20_000), fn);
  const temporalDeadlineMs = deps.temporalDeadlineMs ?? DEFAULT_TEMPORAL_CALL_DEADLINE_MS;
  const dispatcher =
    deps.dispatcher ?? createRunDispatcher({ pool: deps.pool, temporal: deps.temporal, deadlineMs: temporalDeadlineMs, ...(deps.taskQueue ? { taskQueue: deps.taskQueue } : {}) });

  async function findByIdempotencyKey(tx: Tx, orgId: string, key: string): Promise<RunRow | undefined> {
    const { rows } = await tx.query<RunRow>(
      `select ${runColumns} from public.agent_runs where org_id = $1 and idempotency_key = $2`,
      [orgId, key],
    );
    return rows[0];
  }

  /**
   * Commits the run row, then starts its workflow, never both in one transaction: a Temporal
   * call inside one would hold a pooled connection for as long as Temporal takes to answer, and
   * a stalled frontend would starve every other request of connections. The row comes first so a
   * workflow never exists without its row; a row whose start was not confirmed (Temporal timed
   * out, the process died in between) is started by a retry with the same Idempotency-Key or by
   * the dispatcher's sweep (api/services/run-dispatch.ts), idempotently under `agent-run:<runId>`.
   */
  async function startRun(principal: Principal, request: StartRunRequest): Promise<{ run: RunView; created: boolean }> {
    const { row, created } = await withPrincipal(deps.pool, principal, async (tx) => {
      // The agent check is folded into the insert (one round trip): no visible agent, no row.
      const inserted = await tx.query<RunRow>(
        `insert into public.agent_runs (org_id, agent_id, input, idempotency_key, created_by)
         select $1, a.id, $3, $4, (select auth.uid()) from public.agents a where a.id = $2 and a.org_id = $1 and a.status = 'active'
         on conflict (org_id, idempotency_key) where idempotency_key is not null do nothing
         returning ${runColumns}`,
        [request.orgId, request.agentId, request.input, request.idempotencyKey ?? null],
      );
      if (inserted.rows[0]) return { row: inserted.rows[0], created: true };
      // Nothing inserted: the agent is not visible (404, checked first as before), the
      // Idempotency-Key was used already (the earlier run, even if the agent was paused since),
      // or the agent is paused.
      const agent = await tx.query<{ status: string }>(`select status from public.agents where id = $1 and org_id = $2`, [request.agentId, request.orgId]);
      if (agent.rowCount !== 1) throw notFound('Agent');
      const earlier = request.idempotencyKey === undefined ? undefined : await findByIdempotencyKey(tx, request.orgId, request.idempotencyKey);
      if (!earlier && agent.rows[0]!.status === 'paused') throw agentPaused();
      if (request.idempotencyKey === undefined) throw notFound('Agent');
      // Same key: the earlier run, provided it was the same request.
      if (!earlier) throw new ProblemError('conflict', 'A request with this Idempotency-Key is still being processed; retry shortly.');
      if (earlier.agent_id !== request.agentId || earlier.input !== request.input) {
        throw new ProblemError('conflict', 'This Idempotency-Key was already used for a different request; use a new key.');
      }
      return { row: earlier, created: false };
    });
    // A finished run is answered as stored, whatever Temporal still holds: starting its workflow
    // again (its history gone past retention, or another Temporal sharing this database) would
    // run a second execution against a run whose outcome clients have already read.
    if (row.dispatched_at === null && !TERMINAL.has(row.status)) await dispatcher.dispatch({ runId: row.id, orgId: row.org_id, agentId: row.agent_id });
    return { run: toView(row), created };
  }

  async function getRun(principal: Principal, orgId: string, runId: string): Promise<RunView> {
    const { rows } = await autocommitAsPrincipal<RunRow>(deps.pool, principal, `select ${runColumns}, ${attentionColumn} from public.agent_runs where id = $1 and org_id = $2`, [runId, orgId]);
    if (!rows[0]) throw notFound('Run');
    return toView(rows[0]);
  }

  async function listRuns(
    principal: Principal,
    orgId: string,
    query: { agentId?: string | undefined; status?: RunView['status'] | undefined; needsAttention?: boolean | undefined; limit: number; cursor?: string | undefined },
  ) {
    const after = decodeCursor(query.cursor);
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'member');
      const { rows } = await tx.query<RunRow & KeysetRow>(
        `select ${runColumns}, ${attentionColumn}, ${cursorAt('created_at')} from public.agent_runs
          where org_id = $1
            and ($2::uuid is null or agent_id = $2)
            and ($3::text is null or status = $3)
            and (not $7::boolean or exists (select 1 from public.run_attention a where a.run_id = agent_runs.id and a.org_id = agent_runs.org_id))
            and ($4::timestamptz is null or (created_at, id) < ($4::timestamptz, $5::uuid))
          order by created_at desc, id desc
          limit $6`,
        [orgId, query.agentId ?? null, query.status ?? null, after?.createdAt ?? null, after?.id ?? null, query.limit + 1, query.needsAttention ?? false],
      );
      return toPage(rows, query.limit, toView);
    });
  }

  /**
   * A member has seen the conversation that needed a person: the flag is cleared (idempotent; a
   * run without one answers the same). Another org's run is a 404.
   */
  async function acknowledgeAttention(principal: Principal, orgId: string, runId: string): Promise<RunView> {
    await withPrincipal(deps.pool, principal, async (tx) => {
      const run = await tx.query(`select 1 from public.agent_runs where id = $1 and org_id = $2`, [runId, orgId]);
      if (run.rowCount !== 1) throw notFound('Run');
      await tx.query(`delete from public.run_attention where run_id = $1 and org_id = $2`, [runId, orgId]);
    });
    return getRun(principal, orgId, runId);
  }

  /** Requests cancellation: the workflow aborts its in-flight activity and records the run as cancelled. */
  async function cancelRun(principal: Principal, orgId: string, runId: string): Promise<RunView> {
    const run = await getRun(principal, orgId, runId);
    if (TERMINAL.has(run.status)) throw new ProblemError('run-ended', `The run has already ended (${run.status}); there is nothing to cancel.`);
    try {
      await callTemporal(deps.temporal, temporalDeadlineMs, () => deps.temporal.workflow.getHandle(run.workflowId).cancel(), 'Temporal did not accept the cancellation in time; retry.');
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new ProblemError('run-ended', 'The run is no longer running; there is nothing to cancel.');
      throw err;
    }
    return run;
  }

  /**
   * Ends the run's follow-up wait (schedule_follow_up) now, so the agent resumes at once. The
   * workflow's validator refuses it when the run is not waiting for a follow-up.
   */
  async function resumeFollowUp(principal: Principal, orgId: string, runId: string): Promise<RunView> {
    const run = await getRun(principal, orgId, runId);
    if (TERMINAL.has(run.status)) throw new ProblemError('run-ended', `The run has already ended (${run.status}); it has no follow-up to resume.`);
    try {
      await withUpdateDeadline(() => deps.temporal.workflow.getHandle(run.workflowId).executeUpdate(resumeFollowUpUpdate));
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) throw updateRefusedProblem(err, 'The resume');
      if (err instanceof WorkflowNotFoundError) throw new ProblemError('run-ended', 'The run is no longer running; there is nothing to resume.');
      if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError || isTemporalUnanswered(err)) {
        throw new ProblemError('service-unavailable', 'The run did not answer in time; retry.');
      }
      throw err;
    }
    return run;
  }

  /**
   * Gives a handed-off conversation back to the agent now: it answers the lead's next message.
   * Through the workflow (the worker writes the state), so it is ordered with the conversation's
   * turns; the answer is the run as it is after the resume.
   */
  async function resumeHandoff(principal: Principal, orgId: string, runId: string): Promise<RunView> {
    const run = await getRun(principal, orgId, runId);
    if (TERMINAL.has(run.status)) throw new ProblemError('run-ended', `The conversation has already ended (${run.status}); there is nothing to resume.`);
    if (!run.handoff) throw new ProblemError('not-handed-off', 'The conversation is not handed off to people; the agent is already answering.');
    try {
      await withUpdateDeadline(() => deps.temporal.workflow.getHandle(run.workflowId).executeUpdate(resumeConversationUpdate));
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) throw updateRefusedProblem(err, 'The resume');
      if (err instanceof WorkflowNotFoundError) throw new ProblemError('run-ended', 'The conversation is no longer running; there is nothing to resume.');
      if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError || isTemporalUnanswered(err)) {
        throw new ProblemError('service-unavailable', 'The conversation did not answer in time; retry.');
      }
      throw err;
    }
    return getRun(principal, orgId, runId);
  }

  /**
   * A person's decision on a pending approval. The response (author, comment) is written to
   * Postgres first; the workflow then accepts or refuses it through an Update whose validator
   * rejects stale and double decisions, so exactly one response ever counts.
   */
  async function decideApproval(
    principal: Principal,
    orgId: string,
    runId: string,
    approvalId: string,
    decision: { decision: 'approve' | 'reject'; comment?: string | undefined },
  ): Promise<{ approvalId: string; status: ApprovalState }> {
    if (principal.kind !== 'user') throw new ProblemError('forbidden', 'Approvals are decided by people: sign in as a user.');
    const { responseId, workflowId } = await withPrincipal(deps.pool, principal, async (tx) => {
      const { rows } = await tx.query<{ status: string; workflow_id: string; expires_at: Date }>(
        `select a.status, r.workflow_id, a.expires_at from public.run_approvals a
           join public.agent_runs r on r.id = a.run_id and r.org_id = a.org_id
          where a.id = $1 and a.run_id = $2 and a.org_id = $3`,
        [approvalId, runId, orgId],
      );
      const approval = rows[0];
      if (!approval) throw notFound('Approval');
      if (approval.status !== 'pending') throw new ProblemError('approval-not-pending', `The approval is already ${approval.status}; it cannot be decided again.`);
      const inserted = await tx.query<{ id: string }>(
        `insert into public.run_approval_responses (org_id, approval_id, author, decision, comment)
         values ($1, $2, (select auth.uid()), $3, $4) returning id`,
        [orgId, approvalId, decision.decision, decision.comment ?? null],
      );
      return { responseId: inserted.rows[0]!.id, workflowId: approval.workflow_id };
    });
    try {
      return await withUpdateDeadline(() =>
        deps.temporal.workflow
          .getHandle(workflowId)
          .executeUpdate(decideApprovalUpdate, { args: [{ approvalId, decision: decision.decision, responseId }] }),
      );
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) throw updateRefusedProblem(err, 'The decision');
      if (err instanceof WorkflowNotFoundError) throw new ProblemError('run-ended', 'The run is no longer running; the approval cannot be decided.');
      if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError || isTemporalUnanswered(err)) {
        throw new ProblemError('service-unavailable', 'The run did not answer in time; retry the decision.');
      }
      throw err;
    }
  }

  /** Durable events of a run after `afterSeq`, in order (RLS-scoped: another org's run yields nothing). */
  async function eventsAfter(principal: Principal, orgId: string, runId: string, afterSeq: number, limit = 500) {
    return withPrincipal(deps.pool, principal, async (tx) => {
      const { rows } = await tx.query<{ seq: number; type: string; payload: Record<string, unknown>; created_at: Date }>(
        `select seq, type, payload, created_at from public.run_events
          where run_id = $1 and org_id = $2 and seq > $3 order by seq limit $4`,
        [runId, orgId, afterSeq, limit],
      );
      return rows.map((r) => ({ seq: r.seq, type: r.type, payload: r.payload, createdAt: r.created_at.toISOString() }));
    });
  }

  /**
   * Delivers a message to the agent's conversation `threadKey`, starting it when there is none
   * (update-with-start). The conversation row and the message commit first; the Update carries
   * the message id only. The agent's busy policy decides what happens while it is working:
   * queue (default), reject (409) or interrupt the current turn.
   */
  async function postMessage(
    principal: Principal,
    request: {
      orgId: string;
      agentId: string;
      threadKey: string;
      content: string;
      /** CRM messages only: the webhook event it came from, so a retry delivers it once. */
      sourceKey?: string;
    },
  ) {
    // Messages are written in a person's name (RLS: author = auth.uid()); API keys have none.
    // The one exception: a lead's incoming CRM message, posted by the CRM webhook intake as the
    // org's worker into a `crm:` thread, with no author and source 'crm_webhook' (RLS-checked).
    const fromCrm = principal.kind === 'worker' && request.threadKey.startsWith('crm:');
    if (principal.kind !== 'user' && !fromCrm) throw new ProblemError('forbidden', 'Conversation messages are sent by people: sign in as a user.');
    const sourceKey = fromCrm ? request.sourceKey : undefined;
    const { row, messageId } = await withPrincipal(deps.pool, principal, async (tx) => {
      const agent = await tx.query<{ status: string }>(`select status from public.agents where id = $1 and org_id = $2`, [request.agentId, request.orgId]);
      if (agent.rowCount !== 1) throw notFound('Agent');
      const paused = agent.rows[0]!.status === 'paused';
      if (sourceKey !== undefined) {
        // Written already by an earlier attempt: deliver that message (the Update is deduplicated by id).
        const earlier = await tx.query<RunRow & { message_id: string }>(
          `select ${runColumns.split(', ').map((c) => `r.${c}`).join(', ')}, m.id as message_id
             from public.conversation_messages m join public.agent_runs r on r.id = m.run_id and r.org_id = m.org_id
            where m.org_id = $1 and m.source_key = $2`,
          [request.orgId, sourceKey],
        );
        if (earlier.rows[0]) return { row: earlier.rows[0], messageId: earlier.rows[0].message_id };
      }
      const open = `thread_key is not null and status not in ('completed', 'failed', 'cancelled')`;
      // A paused agent starts no conversation; an open one takes the message (recorded, and held
      // at its next turn by the rules).
      const inserted = paused
        ? { rows: [] as RunRow[] }
        : await tx.query<RunRow>(
            `insert into public.agent_runs (org_id, agent_id, input, created_by, thread_key)
             values ($1, $2, '', (select auth.uid()), $3)
             on conflict (org_id, agent_id, thread_key) where ${open} do nothing
             returning ${runColumns}`,
            [request.orgId, request.agentId, request.threadKey],
          );
      const found =
        inserted.rows[0] ??
        (
          await tx.query<RunRow>(
            `select ${runColumns} from public.agent_runs where org_id = $1 and agent_id = $2 and thread_key = $3 and ${open}`,
            [request.orgId, request.agentId, request.threadKey],
          )
        ).rows[0];
      if (!found && paused) throw agentPaused();
      if (!found) throw new ProblemError('conflict', 'The conversation is being started by another request; retry shortly.');
      const message = await tx.query<{ id: string }>(
        `insert into public.conversation_messages (org_id, run_id, author, content, source, source_key)
         values ($1, $2, (select auth.uid()), $3, $4, $5) returning id`,
        [request.orgId, found.id, request.content, fromCrm ? 'crm_webhook' : 'user', sourceKey ?? null],
      );
      return { row: found, messageId: message.rows[0]!.id };
    });
    const start = new WithStartWorkflowOperation(agentRun, {
      taskQueue: deps.taskQueue ?? AGENT_RUNS_TASK_QUEUE,
      workflowId: agentRunWorkflowId(row.id),
      args: [{ orgId: row.org_id, agentId: row.agent_id, runId: row.id, conversation: { idleTimeoutSeconds: deps.conversationIdleTimeoutSeconds ?? 7 * 86400 } }],
      workflowIdConflictPolicy: 'USE_EXISTING',
      typedSearchAttributes: [
        { key: OrgIdSearchAttribute, value: row.org_id },
        { key: AgentIdSearchAttribute, value: row.agent_id },
      ],
      staticSummary: `Conversation ${row.id} of agent ${row.agent_id}`,
      // Conversations live for weeks: this marks them to move to each new worker build
      // (workflows/index.ts). Not a versioningOverride: that would starve unversioned workers.
      memo: { [CONVERSATION_MEMO]: true },
    });
    // A conversation that ended since an earlier attempt delivered this message: nothing to do.
    if (TERMINAL.has(row.status)) return { runId: row.id, workflowId: row.workflow_id, messageId, queued: false, interrupted: false };
    try {
      const accepted = await withUpdateDeadline(() =>
        deps.temporal.workflow.executeUpdateWithStart(postMessageUpdate, { args: [{ messageId }], updateId: `message:${messageId}`, startWorkflowOperation: start }),
      );
      return { runId: row.id, workflowId: row.workflow_id, ...accepted };
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) throw updateRefusedProblem(err, 'The message');
      if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError || isTemporalUnanswered(err)) {
        throw new ProblemError('service-unavailable', 'The agent did not pick up the message in time; retry shortly.');
      }
      throw err;
    }
  }

  return { startRun, getRun, listRuns, cancelRun, resumeFollowUp, resumeHandoff, acknowledgeAttention, decideApproval, eventsAfter, postMessage };
}

export type RunService = ReturnType<typeof createRunService>;
