/** Timeouts and retry policies of every activity `agentRun` calls, and the proxies that carry them. */
import { proxyActivities, proxyLocalActivities, type ActivityOptions } from '@temporalio/workflow';
import type { AgentRunActivities } from '../../activities/agent-run/index.js';
import { NonRetryableFailureTypes } from '../../activities/failure-types.js';
import type { ToolKind } from '../../activities/tools/registry.js';

/** Overrides the default heartbeat timeout of LLM and tool calls (crash tests shorten it). */
export type HeartbeatOverride = Pick<ActivityOptions, 'heartbeatTimeout'>;

// Database bookkeeping is quick; it retries until Postgres is back (a deploy, a failover).
const bookkeepingOptions: ActivityOptions = {
  startToCloseTimeout: '30 seconds',
  retry: {
    initialInterval: '1 second',
    backoffCoefficient: 2,
    maximumInterval: '30 seconds',
    nonRetryableErrorTypes: [NonRetryableFailureTypes.runNotFound],
  },
};
export const bookkeeping = proxyActivities<AgentRunActivities>(bookkeepingOptions);

// The run row is committed by the API just after the start; a row that never appears means the
// API's transaction failed after Temporal accepted the workflow, and the run gives up.
const runStartOptions: ActivityOptions = {
  startToCloseTimeout: '30 seconds',
  summary: 'Start run',
  retry: {
    initialInterval: '500 milliseconds',
    backoffCoefficient: 2,
    maximumInterval: '30 seconds',
    maximumAttempts: 15,
    nonRetryableErrorTypes: [NonRetryableFailureTypes.runNotFound],
  },
};
export const runStart = proxyActivities<AgentRunActivities>(runStartOptions);

/**
 * Starting and finishing a run are one short, idempotent transaction each (keyed by the event's
 * seq), so they run as local activities: no activity task round trip through the server and
 * fewer history events, same timeouts and retries. Executions recorded before this change
 * replay with the regular activities (`patched`, decided once per execution).
 */
export const LOCAL_BOOKKEEPING_PATCH = 'agent-run-local-start-finish';
export const localRunStart = proxyLocalActivities<AgentRunActivities>(runStartOptions);
export const localBookkeeping = proxyLocalActivities<AgentRunActivities>(bookkeepingOptions);

// A model can think for minutes; the heartbeat timeout notices a dead worker long before that.
// 429s wait for the provider's Retry-After (nextRetryDelay overrides the backoff below).
const llmOptions: ActivityOptions = {
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '30 seconds',
  retry: {
    initialInterval: '2 seconds',
    backoffCoefficient: 2,
    maximumInterval: '1 minute',
    maximumAttempts: 8,
    nonRetryableErrorTypes: [
      NonRetryableFailureTypes.runNotFound,
      NonRetryableFailureTypes.llmRejected,
      NonRetryableFailureTypes.llmAuth,
      NonRetryableFailureTypes.llmKeyRejected,
      NonRetryableFailureTypes.runBudgetExceeded,
      NonRetryableFailureTypes.orgQuotaExceeded,
    ],
  },
};

/** The LLM turn's activity, labelled for the Temporal UI. */
export const llmStep = (heartbeat: HeartbeatOverride, summary: string) =>
  proxyActivities<AgentRunActivities>({ ...llmOptions, ...heartbeat, summary });

// Tools talk to CRMs and databases: bounded retries, and a heartbeat for the long ones.
const toolOptions: ActivityOptions = {
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '30 seconds',
  retry: {
    initialInterval: '1 second',
    backoffCoefficient: 2,
    maximumInterval: '30 seconds',
    maximumAttempts: 6,
    nonRetryableErrorTypes: [NonRetryableFailureTypes.runNotFound],
  },
};

/**
 * A tool call's activity. Its id is derived from the result's seq, which survives
 * continue-as-new, so `${workflowId}:${activityId}` is a stable idempotency key for effects.
 */
export const toolStep = (heartbeat: HeartbeatOverride, resultSeq: number, summary: string) =>
  proxyActivities<AgentRunActivities>({ ...toolOptions, ...heartbeat, activityId: `tool-${resultSeq}`, summary });

/**
 * Read and control tools (and a tool the agent may not use, which only records an error) change
 * nothing outside the run, so a repeat after a crash is harmless: they run as local activities,
 * one marker event in the workflow task that follows the LLM turn instead of an activity's
 * scheduled, started and completed events and a workflow task of their own (an LLM turn with a
 * tool call: 12 events → 7). Effect tools (CRM writes) stay regular activities: heartbeats,
 * server-side retries and their ledger (activities/effects.ts). A local activity cannot
 * heartbeat; a worker that dies during one is noticed by the workflow task timeout, and the tool
 * runs again on the next worker. Executions recorded before this change replay with the regular
 * activity (`patched`).
 */
export const LOCAL_TOOLS_PATCH = 'agent-run-local-read-tools';
export const localToolStep = (summary: string) =>
  proxyLocalActivities<AgentRunActivities>({ startToCloseTimeout: toolOptions.startToCloseTimeout, retry: toolOptions.retry, summary });

/** Whether a planned tool call may run as a local activity (see LOCAL_TOOLS_PATCH). */
export const runsLocally = (kind: ToolKind | null): boolean => kind !== 'effect';

// A reply into the lead's CRM thread: 429 waits for the CRM's Retry-After (nextRetryDelay), 5xx and
// network errors back off; a 4xx never reaches here (the activity records it as `reply_failed`).
const crmReplyOptions: ActivityOptions = {
  startToCloseTimeout: '1 minute',
  summary: 'Reply in the CRM thread',
  retry: {
    initialInterval: '2 seconds',
    backoffCoefficient: 2,
    maximumInterval: '1 minute',
    maximumAttempts: 10,
    nonRetryableErrorTypes: [NonRetryableFailureTypes.runNotFound],
  },
};
export const crmReply = proxyActivities<AgentRunActivities>(crmReplyOptions);

/** Conversations recorded before replies were sent into CRM threads replay without the send. */
export const SEND_REPLY_PATCH = 'send-reply-to-crm';

/**
 * The team's rules, read before each conversation turn: one short read, so a local activity.
 * Conversations recorded before the rules existed replay without the read (`patched`).
 */
export const REPLY_RULES_PATCH = 'agent-reply-rules';
export const replyRules = proxyLocalActivities<AgentRunActivities>({ ...bookkeepingOptions, summary: 'Check the reply rules' });

// A handoff writes a CRM task for the lead's responsible user: 429 waits for Retry-After,
// 5xx backs off; a task the CRM refuses for good is logged by the activity, the handoff stands.
const handoffOptions: ActivityOptions = {
  startToCloseTimeout: '1 minute',
  summary: 'Hand the conversation to people',
  retry: {
    initialInterval: '2 seconds',
    backoffCoefficient: 2,
    maximumInterval: '1 minute',
    maximumAttempts: 10,
    nonRetryableErrorTypes: [NonRetryableFailureTypes.runNotFound],
  },
};
export const handoffSteps = proxyActivities<AgentRunActivities>(handoffOptions);

/**
 * The summary of an ended conversation for the lead's memory: one LLM call, bounded retries;
 * a conversation whose summary cannot be written still ends completed (memory is a help, not
 * the outcome). Conversations recorded before memory existed replay without it (`patched`).
 */
export const LEAD_MEMORY_PATCH = 'lead-memory-summary';
export const leadMemory = proxyActivities<AgentRunActivities>({ ...llmOptions, summary: 'Remember the conversation for the lead' });
