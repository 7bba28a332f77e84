import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type pg from 'pg';
import { autocommitAsPrincipal } from '../../lib/db.js';
import type { Logger } from '../../lib/logger.js';
import type { agentRun } from '../../workflows/agent-run/index.js';
import { AgentIdSearchAttribute, OrgIdSearchAttribute } from '../../workflows/search-attributes.js';
import { AGENT_RUNS_TASK_QUEUE, agentRunWorkflowId } from '../../workflows/task-queues.js';
import { callTemporal, DEFAULT_TEMPORAL_CALL_DEADLINE_MS } from './temporal-calls.js';

/**
 * Starting a task run's workflow, after its row has committed. The row is the record that the
 * run must happen; `dispatched_at` says Temporal has accepted its workflow. The start is
 * idempotent (the workflow id is `agent-run:<runId>`, duplicates are refused or joined), so
 * whoever finds a row undispatched, the request that created it, a client retrying with the same
 * Idempotency-Key, or the periodic sweep, may start it again without ever creating a second
 * execution. See docs/architecture.md, "Rows first, then Temporal".
 */
export interface RunDispatcherDeps {
  pool: pg.Pool;
  temporal: Client;
  taskQueue?: string;
  /** Per Temporal call (default 5 s). */
  deadlineMs?: number;
}

export interface AgentRunRef {
  runId: string;
  orgId: string;
  agentId: string;
}

/** The sweep leaves runs this young to the request that created them. */
const SWEEP_GRACE_SECONDS = 10;
/** A claimed run is retried by another sweep after this long. */
const SWEEP_LEASE_SECONDS = 60;
const SWEEP_BATCH = 100;

export function createRunDispatcher(deps: RunDispatcherDeps) {
  const deadlineMs = deps.deadlineMs ?? DEFAULT_TEMPORAL_CALL_DEADLINE_MS;

  async function startWorkflow(run: AgentRunRef): Promise<void> {
    try {
      await deps.temporal.workflow.start<typeof agentRun>('agentRun', {
        taskQueue: deps.taskQueue ?? AGENT_RUNS_TASK_QUEUE,
        workflowId: agentRunWorkflowId(run.runId),
        args: [{ orgId: run.orgId, agentId: run.agentId, runId: run.runId }],
        // A second start joins the open workflow, or learns the closed one already ran
        // (REJECT_DUPLICATE), and never starts a second execution.
        workflowIdConflictPolicy: 'USE_EXISTING',
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        typedSearchAttributes: [
          { key: OrgIdSearchAttribute, value: run.orgId },
          { key: AgentIdSearchAttribute, value: run.agentId },
        ],
        staticSummary: `Agent run ${run.runId} of agent ${run.agentId}`,
      });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) return;
      throw err;
    }
  }

  /**
   * Starts the run's workflow and records that Temporal accepted it. A Temporal that does not
   * answer within the deadline becomes a 503 problem; the row stays undispatched for a retry or
   * the sweep.
   */
  async function dispatch(run: AgentRunRef): Promise<void> {
    await callTemporal(deps.temporal, deadlineMs, () => startWorkflow(run), 'The run is recorded but Temporal did not accept it in time; it starts once Temporal answers. Retry with the same Idempotency-Key to learn its state.');
    // As the org's worker: the run's creator may be an API key or a member, neither of whom
    // updates runs; the worker principal is what the runtime writes runs as.
    await autocommitAsPrincipal(deps.pool, { kind: 'worker', orgId: run.orgId }, `update public.agent_runs set dispatched_at = now() where id = $1 and org_id = $2 and dispatched_at is null`, [run.runId, run.orgId]);
  }

  /** One sweep: dispatches the undispatched runs older than the grace period (of one org, with `orgId`). */
  async function dispatchPending(opts: { graceSeconds?: number; leaseSeconds?: number; orgId?: string } = {}): Promise<{ dispatched: string[]; failed: Array<{ runId: string; error: unknown }> }> {
    const { rows } = await deps.pool.query<{ run_id: string; org_id: string; agent_id: string }>(
      `select run_id, org_id, agent_id from private.claim_undispatched_agent_runs($1, $2, $3, $4)`,
      [opts.graceSeconds ?? SWEEP_GRACE_SECONDS, opts.leaseSeconds ?? SWEEP_LEASE_SECONDS, SWEEP_BATCH, opts.orgId ?? null],
    );
    const dispatched: string[] = [];
    const failed: Array<{ runId: string; error: unknown }> = [];
    for (const row of rows) {
      try {
        await dispatch({ runId: row.run_id, orgId: row.org_id, agentId: row.agent_id });
        dispatched.push(row.run_id);
      } catch (error) {
        failed.push({ runId: row.run_id, error });
      }
    }
    return { dispatched, failed };
  }

  /** Sweeps every `intervalMs` until the returned stop is called (and awaited). */
  function sweepEvery(intervalMs: number, logger: Logger): () => Promise<void> {
    let running: Promise<void> = Promise.resolve();
    const timer = setInterval(() => {
      running = running.then(async () => {
        try {
          const { dispatched, failed } = await dispatchPending();
          if (dispatched.length > 0) logger.info({ runIds: dispatched }, 'dispatched runs whose start had not been confirmed');
          if (failed.length > 0) logger.warn({ runIds: failed.map((f) => f.runId), err: failed[0]!.error }, 'runs still undispatched');
        } catch (err) {
          logger.warn({ err }, 'run dispatch sweep failed');
        }
      });
    }, intervalMs);
    timer.unref();
    return async () => {
      clearInterval(timer);
      await running;
    };
  }

  return { dispatch, dispatchPending, sweepEvery };
}

export type RunDispatcher = ReturnType<typeof createRunDispatcher>;
