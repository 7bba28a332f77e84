/** Approvals and questions to a person: opened for a tool call, decided (or expired), answered to the model. */
import { withPrincipal } from '../../lib/db.js';
import type { HumanOutcome, RunStep, ToolCallRef } from './contract.js';
import type { ResolvedAgentRunDeps } from './deps.js';
import { appendEvent, loadToolCall, workerOf } from './run-store.js';

export function createHumanStepActivities({ pool, events }: Pick<ResolvedAgentRunDeps, 'pool' | 'events'>) {
  /** Opens a pending approval (or a question to a person) for a tool call; the run waits for it. */
  async function requestApproval(
    input: ToolCallRef & { approvalId: string; kind: 'approval' | 'input'; timeoutSeconds: number },
  ): Promise<void> {
    const requested = await withPrincipal(pool, workerOf(input.orgId), async (tx) => {
      const { toolCall } = await loadToolCall(tx, input);
      let args: unknown = toolCall.function.arguments;
      try {
        args = JSON.parse(toolCall.function.arguments);
      } catch {
        // Shown as the model sent it.
      }
      await tx.query(
        `insert into public.run_approvals (id, org_id, run_id, seq, kind, tool_name, expires_at)
         values ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
         on conflict (id) do nothing`,
        [input.approvalId, input.orgId, input.runId, input.seq, input.kind, toolCall.function.name, input.timeoutSeconds],
      );
      await appendEvent(tx, input, 'approval.requested', {
        approvalId: input.approvalId,
        kind: input.kind,
        toolName: toolCall.function.name,
        arguments: args,
      });
      await tx.query(
        `update public.agent_runs set status = 'awaiting_approval' where id = $1 and org_id = $2 and status in ('running', 'sleeping')`,
        [input.runId, input.orgId],
      );
      const { rows } = await tx.query<{ agent_id: string }>(`select agent_id from public.agent_runs where id = $1 and org_id = $2`, [input.runId, input.orgId]);
      return { toolName: toolCall.function.name, agentId: rows[0]?.agent_id ?? null };
    });
    // After the commit: a retry of this activity re-runs the idempotent writes above and publishes
    // the same event (its id is the approval's), so people are told once.
    await events?.publish({
      orgId: input.orgId,
      type: 'approval.requested',
      cause: input.approvalId,
      data: { runId: input.runId, agentId: requested.agentId, approvalId: input.approvalId, kind: input.kind, toolName: requested.toolName },
    });
  }

  /** Records the decision the workflow accepted (or the expiry) on the approval and in the event log. */
  async function recordApprovalDecision(
    input: RunStep & { approvalId: string; decision: 'approve' | 'reject' | 'expire'; responseId?: string },
  ): Promise<void> {
    const status = { approve: 'approved', reject: 'rejected', expire: 'expired' }[input.decision];
    await withPrincipal(pool, workerOf(input.orgId), async (tx) => {
      await tx.query(
        `update public.run_approvals a
            set status = $4, response_id = $5, decided_at = now(),
                decided_by = (select r.author from public.run_approval_responses r where r.id = $5 and r.org_id = a.org_id)
          where a.id = $1 and a.org_id = $2 and a.run_id = $3 and a.status = 'pending'`,
        [input.approvalId, input.orgId, input.runId, status, input.responseId ?? null],
      );
      await appendEvent(tx, input, 'approval.decided', { approvalId: input.approvalId, status, responseId: input.responseId ?? null });
      await tx.query(
        `update public.agent_runs set status = 'running' where id = $1 and org_id = $2 and status = 'awaiting_approval'`,
        [input.runId, input.orgId],
      );
    });
  }

  /** The tool result for a call a person rejected, let expire, or answered (request_human_input). */
  async function completeHumanStep(input: ToolCallRef & { approvalId: string; outcome: HumanOutcome }): Promise<void> {
    await withPrincipal(pool, workerOf(input.orgId), async (tx) => {
      const { toolCall } = await loadToolCall(tx, input);
      const { rows } = await tx.query<{ comment: string | null }>(
        `select r.comment from public.run_approvals a join public.run_approval_responses r on r.id = a.response_id and r.org_id = a.org_id
          where a.id = $1 and a.org_id = $2`,
        [input.approvalId, input.orgId],
      );
      const comment = rows[0]?.comment ?? null;
      const payload =
        input.outcome === 'answered'
          ? { result: { answer: comment ?? '' } }
          : input.outcome === 'rejected'
            ? { error: `A person rejected this action; it was not performed.${comment ? ` Their comment: ${comment}` : ''}` }
            : { error: 'Nobody decided within the approval timeout; the action was not performed.' };
      await appendEvent(tx, input, 'tool.completed', { toolCallId: toolCall.id, name: toolCall.function.name, ...payload });
    });
  }

  return { requestApproval, recordApprovalDecision, completeHumanStep };
}
