/**
 * Activities of `agentRun`, one file per job: the workflow-facing contract (contract.ts), the
 * shared event-log reads and writes (run-store.ts), the transcript (transcript.ts), the run's
 * lifecycle (lifecycle.ts), an LLM turn (llm-step.ts), a tool call (tool-step.ts), the steps
 * a person takes (human-steps.ts), a reply into the lead's CRM thread (send-reply.ts) and the
 * team's rules checked before a conversation answers (reply-rules.ts) and human handoff
 * (handoff.ts).
 */
import { resolveDeps, type AgentRunActivityDeps } from './deps.js';
import { createHandoffActivities } from './handoff.js';
import { createHumanStepActivities } from './human-steps.js';
import { createLifecycleActivities } from './lifecycle.js';
import { createLlmStepActivities } from './llm-step.js';
import { createMemoryActivities } from './memory.js';
import { createReplyRulesActivities } from './reply-rules.js';
import { createSendReplyActivities } from './send-reply.js';
import { createToolStepActivities } from './tool-step.js';

export type { AgentRunActivityDeps } from './deps.js';

export function createAgentRunActivities(deps: AgentRunActivityDeps) {
  const resolved = resolveDeps(deps);
  const { startRun, acceptMessage, setRunStatus, finishRun } = createLifecycleActivities(resolved);
  const { callLlm } = createLlmStepActivities(resolved);
  const { executeTool } = createToolStepActivities(resolved);
  const { requestApproval, recordApprovalDecision, completeHumanStep } = createHumanStepActivities(resolved);
  const { sendReply } = createSendReplyActivities(resolved);
  const { rememberConversation } = createMemoryActivities(resolved);
  const { checkReplyRules } = createReplyRulesActivities(resolved);
  const { requestHandoff, endHandoff } = createHandoffActivities(resolved);
  return {
    startRun,
    callLlm,
    executeTool,
    acceptMessage,
    setRunStatus,
    requestApproval,
    recordApprovalDecision,
    completeHumanStep,
    sendReply,
    checkReplyRules,
    requestHandoff,
    endHandoff,
    finishRun,
    rememberConversation,
  };
}

export type AgentRunActivities = ReturnType<typeof createAgentRunActivities>;
