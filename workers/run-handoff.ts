import { WithStartWorkflowOperation, WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import type { AgentRunHandoff, RunRef } from '../activities/crm-intake.js';
import { agentRun, postMessageUpdate, requestHandoffUpdate } from '../workflows/agent-run/index.js';
import { AgentIdSearchAttribute, OrgIdSearchAttribute } from '../workflows/search-attributes.js';
import { AGENT_RUNS_TASK_QUEUE, agentRunWorkflowId } from '../workflows/task-queues.js';

/** How long the intake waits for an agent run to take a message or a handoff. */
export const DEFAULT_UPDATE_DEADLINE_MS = 20_000;

/**
 * How the CRM intake hands committed runs and messages to Temporal. It lives with the workers
 * because it needs the workflow definitions, which activities must not import. The same start
 * options as the API's (api/services/runs.ts): a business-key workflow id, so a retried start
 * finds the existing execution, and an update id per message, so a retried delivery counts once.
 */
export function createAgentRunHandoff(deps: { temporal: Client; taskQueue?: string; conversationIdleTimeoutSeconds?: number; updateDeadlineMs?: number }): AgentRunHandoff {
  const taskQueue = deps.taskQueue ?? AGENT_RUNS_TASK_QUEUE;
  // An update waits for the agent run's worker to run its handler. Without a deadline an intake
  // activity waited forever when no agent worker answered (one stopping, a deploy, an outage),
  // holding its worker's shutdown; with one it fails, and its retry re-sends the same update id,
  // which joins the update already admitted instead of applying it twice. Below the intake's
  // 30 s heartbeat timeout, so Temporal never gives the attempt up while it still waits.
  const updateDeadlineMs = deps.updateDeadlineMs ?? DEFAULT_UPDATE_DEADLINE_MS;
  const underDeadline = <T>(fn: () => Promise<T>) => deps.temporal.connection.withDeadline(Date.now() + updateDeadlineMs, fn);
  const searchAttributes = (run: RunRef) => [
    { key: OrgIdSearchAttribute, value: run.orgId },
    { key: AgentIdSearchAttribute, value: run.agentId },
  ];
  return {
    async startRun(run) {
      try {
        await deps.temporal.workflow.start(agentRun, {
          taskQueue,
          workflowId: agentRunWorkflowId(run.runId),
          args: [{ orgId: run.orgId, agentId: run.agentId, runId: run.runId }],
          workflowIdConflictPolicy: 'USE_EXISTING',
          workflowIdReusePolicy: 'REJECT_DUPLICATE',
          typedSearchAttributes: searchAttributes(run),
          staticSummary: `Agent run ${run.runId} of agent ${run.agentId} (CRM trigger)`,
        });
      } catch (err) {
        if (err instanceof WorkflowExecutionAlreadyStartedError) return;
        throw err;
      }
    },
    async deliverMessage(run, messageId) {
      const start = new WithStartWorkflowOperation(agentRun, {
        taskQueue,
        workflowId: agentRunWorkflowId(run.runId),
        args: [{ orgId: run.orgId, agentId: run.agentId, runId: run.runId, conversation: { idleTimeoutSeconds: deps.conversationIdleTimeoutSeconds ?? 7 * 86400 } }],
        workflowIdConflictPolicy: 'USE_EXISTING',
        typedSearchAttributes: searchAttributes(run),
        staticSummary: `Conversation ${run.runId} of agent ${run.agentId} (CRM lead)`,
      });
      try {
        await underDeadline(() => deps.temporal.workflow.executeUpdateWithStart(postMessageUpdate, { args: [{ messageId }], updateId: `message:${messageId}`, startWorkflowOperation: start }));
        return 'accepted';
      } catch (err) {
        if (err instanceof WorkflowUpdateFailedError) return 'busy';
        throw err;
      }
    },
    async requestHandoff(run, request) {
      try {
        await underDeadline(() =>
          deps.temporal.workflow.getHandle(agentRunWorkflowId(run.runId)).executeUpdate(requestHandoffUpdate, { args: [request], updateId: `handoff:${request.key}` }),
        );
      } catch (err) {
        // The conversation ended meanwhile: there is nothing left to hand over.
        if (err instanceof WorkflowNotFoundError || err instanceof WorkflowUpdateFailedError) return;
        throw err;
      }
    },
  };
}
