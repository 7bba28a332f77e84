/**
 * What the `agentRun` workflow and its activities exchange. Arguments and results carry ids,
 * sequence numbers, tool names and small numbers only: the run's input, the instructions, the
 * model's answers, tool arguments and tool results stay in Postgres (agent_runs, run_events,
 * run_approvals), so Temporal histories hold no tenant text. Types only: the workflow bundle
 * imports this file without pulling in activity code.
 */
import type { FinalRunStatus } from '../../lib/run-status.js';
import type { ToolControl, ToolKind } from '../tools/registry.js';

export interface RunRef {
  orgId: string;
  runId: string;
}

/** `seq` is chosen by the workflow (deterministically), which makes event inserts idempotent across activity retries. */
export interface RunStep extends RunRef {
  seq: number;
}

/** The agent settings the workflow needs to steer the loop (numbers only). */
export interface RunSettings {
  maxSteps: number;
  approvalTimeoutSeconds: number;
  busyPolicy: 'queue' | 'reject' | 'interrupt';
}

/** A tool call as the workflow sees it: which one, which registered tool, and how to treat it. */
export interface ToolCallPlan {
  index: number;
  /** The registered tool name, or null when the model named a tool the agent may not use. */
  tool: string | null;
  kind: ToolKind | null;
  needsApproval: boolean;
}

export interface LlmStepResult {
  finishReason: string;
  inputTokens: number;
  outputTokens: number;
  toolCalls: ToolCallPlan[];
}

export interface ToolCallRef extends RunStep {
  /** The seq of the llm.completed event that requested the call. */
  llmSeq: number;
  index: number;
}

export type ToolStepResult =
  | { outcome: 'completed' | 'error' }
  | { outcome: 'control'; control: ToolControl };

export type HumanOutcome = 'rejected' | 'expired' | 'answered';

/** How a run ended; `finishRun` writes it. */
export type RunOutcome =
  | { status: Extract<FinalRunStatus, 'completed'>; outputSeq: number }
  | { status: Extract<FinalRunStatus, 'failed'>; error: { type: string; message: string } }
  | { status: Extract<FinalRunStatus, 'cancelled'> };
