/** Task queues are part of the contract between the API (which starts workflows) and workers. */
export const AGENT_RUNS_TASK_QUEUE = 'agent-runs';

/** Memo key the API sets on agentRun executions that are conversations (workflows/index.ts reads it). */
export const CONVERSATION_MEMO = 'conversation';

/** Workflow ids are business keys, so a run can only ever have one workflow. */
export function agentRunWorkflowId(runId: string): string {
  return `agent-run:${runId}`;
}
