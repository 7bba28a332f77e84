/**
 * The public face of `agentRun`: its input and result, and the update and query definitions the
 * API uses to talk to a running run (imported there, so message names are never retyped).
 */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { RunSettings } from '../../activities/agent-run/contract.js';
import type { HandoffReason } from '../../lib/agent-rules.js';
import type { WorkflowRunStatus } from '../../lib/run-status.js';

export interface AgentRunInput {
  orgId: string;
  agentId: string;
  runId: string;
  /** Set by continue-as-new: where the previous execution left off. */
  resume?: { seq: number; step: number; inputTokens: number; outputTokens: number; settings: RunSettings };
  /** Continue as new after this many LLM turns in one execution, besides when Temporal suggests it (tests use a low value). */
  continueAsNewAfterSteps?: number;
  /**
   * A conversation: instead of answering the run's input once, the run answers messages that
   * arrive through `postMessageUpdate`, one turn each, and ends after this long without one.
   */
  conversation?: { idleTimeoutSeconds: number; queue?: string[]; lastAnswerSeq?: number };
  /** How soon a dead worker's LLM or tool call is retried elsewhere (default 30 s; crash tests shorten it). */
  heartbeatTimeoutSeconds?: number;
}

export interface AgentRunResult {
  status: 'completed';
  inputTokens: number;
  outputTokens: number;
}

/** The workflow's signature, for continue-as-new from the parts of the workflow that loop. */
export type AgentRunWorkflow = (input: AgentRunInput) => Promise<AgentRunResult>;

export interface ApprovalDecisionInput {
  approvalId: string;
  decision: 'approve' | 'reject';
  /** The run_approval_responses row holding who decided and their comment (kept out of history). */
  responseId: string;
}

export type ApprovalState = 'pending' | 'deciding' | 'approved' | 'rejected' | 'expired';

/** Decides a pending approval (or answers a question of request_human_input). The validator refuses stale and double decisions. */
export const decideApprovalUpdate = defineUpdate<{ approvalId: string; status: ApprovalState }, [ApprovalDecisionInput]>('decideApproval');

/** The run's small live state: status, step, the approvals it waits for and queued conversation messages. */
export const runStateQuery = defineQuery<{ status: WorkflowRunStatus; step: number; pendingApprovals: string[]; queuedMessages: number }>('runState');

/** Delivers a person's message (a conversation_messages row) to a conversation; used with update-with-start. */
export const postMessageUpdate = defineUpdate<{ messageId: string; queued: boolean; interrupted: boolean }, [{ messageId: string }]>('postMessage');

/**
 * Hands the conversation to people (the CRM intake saw a salesperson write in the lead's thread).
 * `key` names the cause, so a redelivered request hands off once; use it as the update id too.
 */
export const requestHandoffUpdate = defineUpdate<{ started: boolean }, [{ reason: HandoffReason; key: string }]>('requestHandoff');

/** A member gives a handed-off conversation back to the agent; `resumed` is false when none was running. */
export const resumeConversationUpdate = defineUpdate<{ resumed: boolean }>('resumeConversation');

/** Ends a pending follow-up wait now: the run resumes at once instead of when its timer fires. */
export const resumeFollowUpUpdate = defineUpdate<{ resumed: true }>('resumeFollowUp');

/**
 * Why the run's validators refuse an Update: the `ApplicationFailure` type each one throws.
 * Part of the updates' contract, so they live beside the definitions; the API maps each to a
 * problem type of its own (api/services/update-refusals.ts, docs/api.md).
 */
export const RunUpdateFailureTypes = {
  /** resumeFollowUp: the run is not waiting for a follow-up (or a resume was already accepted). */
  noFollowUpPending: 'NoFollowUpPending',
  /** decideApproval: the approval is not open on this run, or already decided or expired. */
  approvalNotPending: 'ApprovalNotPending',
  /** postMessage: the agent is answering the previous message and its busy policy is `reject`. */
  agentBusy: 'AgentBusy',
  /** postMessage: the run answers a single task; it takes no messages. */
  notAConversation: 'NotAConversation',
} as const;

export type RunUpdateFailureType = (typeof RunUpdateFailureTypes)[keyof typeof RunUpdateFailureTypes];
