import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type pg from 'pg';
import { withPrincipal, type Tx } from '../../lib/db.js';
import type { Principal } from '../../lib/principal.js';
import { AgentIdSearchAttribute, OrgIdSearchAttribute } from '../../workflows/search-attributes.js';
import { AGENT_RUNS_TASK_QUEUE, agentRunWorkflowId } from '../../workflows/task-queues.js';
import type { agentRun } from '../../workflows/agent-run.js';
import { notFound, ProblemError } from '../problems.js';

export interface RunServiceDeps {
  pool: pg.Pool;
  temporal: Client;
  /** Tests give each suite its own queue so parallel suites never run each other's workflows. */
  taskQueue?: string;
}

export interface RunView {
  id: string;
  orgId: string;
  agentId: string;
  status: 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';
  workflowId: string;
  output: string | null;
  error: { type: string; message: string } | null;
  usage: { inputTokens: number; outputTokens: number };
  createdAt: string;
  startedAt: string | null;
  completedAt: string | null;
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
  created_at: Date;
  started_at: Date | null;
  completed_at: Date | null;
}

const runColumns = `id, org_id, agent_id, status, workflow_id, input, output, error, input_tokens, output_tokens, created_at, started_at, completed_at`;

function toView(row: RunRow): RunView {
  return {
    id: row.id,
    orgId: row.org_id,
    agentId: row.agent_id,
    status: row.status,
    workflowId: row.workflow_id,
    output: row.output,
    error: row.error,
    usage: { inputTokens: row.input_tokens, outputTokens: row.output_tokens },
    createdAt: row.created_at.toISOString(),
    startedAt: row.started_at?.toISOString() ?? null,
    completedAt: row.completed_at?.toISOString() ?? null,
  };
}

export interface StartRunRequest {
  orgId: string;
  agentId: string;
  input: string;
  idempotencyKey?: string;
}

export function createRunService(deps: RunServiceDeps) {
  async function startWorkflow(row: RunRow): Promise<void> {
    try {
      await deps.temporal.workflow.start<typeof agentRun>('agentRun', {
        taskQueue: deps.taskQueue ?? AGENT_RUNS_TASK_QUEUE,
        workflowId: agentRunWorkflowId(row.id),
        args: [{ orgId: row.org_id, agentId: row.agent_id, runId: row.id }],
        // Starting is idempotent: a retried request finds the open workflow, or learns the
        // closed one already ran (REJECT_DUPLICATE), and never starts a second execution.
        workflowIdConflictPolicy: 'USE_EXISTING',
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        typedSearchAttributes: [
          { key: OrgIdSearchAttribute, value: row.org_id },
          { key: AgentIdSearchAttribute, value: row.agent_id },
        ],
        staticSummary: `Agent run ${row.id} of agent ${row.agent_id}`,
      });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) return;
      throw err;
    }
  }

  async function findByIdempotencyKey(tx: Tx, orgId: string, key: string): Promise<RunRow | undefined> {
    const { rows } = await tx.query<RunRow>(
      `select ${runColumns} from public.agent_runs where org_id = $1 and idempotency_key = $2`,
      [orgId, key],
    );
    return rows[0];
  }

  /**
   * Creates the run row and starts its workflow in one transaction: the row commits only once
   * Temporal has accepted the workflow, so a failed start leaves nothing behind and the client
   * can simply retry. The workflow's first activity waits for the row to become visible.
   */
  async function startRun(principal: Principal, request: StartRunRequest): Promise<{ run: RunView; created: boolean }> {
    return withPrincipal(deps.pool, principal, async (tx) => {
      const agent = await tx.query(`select id from public.agents where id = $1 and org_id = $2`, [request.agentId, request.orgId]);
      if (agent.rowCount !== 1) throw notFound('Agent');

      const inserted = await tx.query<RunRow>(
        `insert into public.agent_runs (org_id, agent_id, input, idempotency_key, created_by)
         values ($1, $2, $3, $4, (select auth.uid()))
         on conflict (org_id, idempotency_key) where idempotency_key is not null do nothing
         returning ${runColumns}`,
        [request.orgId, request.agentId, request.input, request.idempotencyKey ?? null],
      );
      let row = inserted.rows[0];
      let created = true;
      if (!row) {
        // Same key: the earlier run, provided it was the same request.
        row = await findByIdempotencyKey(tx, request.orgId, request.idempotencyKey!);
        if (!row) throw new ProblemError('conflict', 'A request with this Idempotency-Key is still being processed; retry shortly.');
        if (row.agent_id !== request.agentId || row.input !== request.input) {
          throw new ProblemError('conflict', 'This Idempotency-Key was already used for a different request; use a new key.');
        }
        created = false;
      }
      await startWorkflow(row);
      return { run: toView(row), created };
    });
  }

  async function getRun(principal: Principal, orgId: string, runId: string): Promise<RunView> {
    return withPrincipal(deps.pool, principal, async (tx) => {
      const { rows } = await tx.query<RunRow>(`select ${runColumns} from public.agent_runs where id = $1 and org_id = $2`, [runId, orgId]);
      if (!rows[0]) throw notFound('Run');
      return toView(rows[0]);
    });
  }

  return { startRun, getRun };
}

export type RunService = ReturnType<typeof createRunService>;
