/** The small, deterministic state one execution of `agentRun` carries, and the moves on it. */
import { setCurrentDetails, upsertSearchAttributes, workflowInfo, type CancellationScope } from '@temporalio/workflow';
import type { RunRef, RunSettings } from '../../activities/agent-run/contract.js';
import { RunStatusSearchAttribute } from '../search-attributes.js';
import type { HeartbeatOverride } from './activity-options.js';
import type { WorkflowRunStatus } from '../../lib/run-status.js';
import type { AgentRunInput, ApprovalState } from './definitions.js';

export class AgentRunState {
  readonly ref: RunRef;
  readonly heartbeat: HeartbeatOverride;
  /**
   * Event sequence numbers come from workflow state, so they are identical on replay and
   * activity retries can insert "their" event idempotently. They survive continue-as-new.
   */
  seq: number;
  step: number;
  inputTokens: number;
  outputTokens: number;
  status: WorkflowRunStatus = 'running';
  settings: RunSettings | undefined;
  readonly approvals = new Map<string, { state: ApprovalState }>();
  /** Conversation state: queued message ids (ids only; the text stays in conversation_messages). */
  readonly queue: string[];
  /** The conversation turn in progress, cancelled when a newer message interrupts it. */
  turn: CancellationScope | undefined;
  interruptRequested = false;
  /** Set while a schedule_follow_up timer runs; the resumeFollowUp update ends the wait early. */
  followUp: { resumeRequested: boolean } | undefined;
  stepsThisExecution = 0;

  constructor(readonly input: AgentRunInput) {
    this.ref = { orgId: input.orgId, runId: input.runId };
    this.heartbeat = input.heartbeatTimeoutSeconds ? { heartbeatTimeout: input.heartbeatTimeoutSeconds * 1000 } : {};
    this.seq = input.resume?.seq ?? 0;
    this.step = input.resume?.step ?? 0;
    this.inputTokens = input.resume?.inputTokens ?? 0;
    this.outputTokens = input.resume?.outputTokens ?? 0;
    this.settings = input.resume?.settings;
    this.queue = [...(input.conversation?.queue ?? [])];
  }

  nextSeq(): number {
    return ++this.seq;
  }

  setStatus(next: WorkflowRunStatus, details: string): void {
    this.status = next;
    upsertSearchAttributes([{ key: RunStatusSearchAttribute, value: next }]);
    setCurrentDetails(details);
  }

  /** What the runState query answers. */
  snapshot() {
    return {
      status: this.status,
      step: this.step,
      pendingApprovals: [...this.approvals].filter(([, a]) => a.state === 'pending').map(([id]) => id),
      queuedMessages: this.queue.length,
    };
  }

  /** Where the next execution picks up after continue-as-new. */
  resumePoint(settings: RunSettings): NonNullable<AgentRunInput['resume']> {
    return { seq: this.seq, step: this.step, inputTokens: this.inputTokens, outputTokens: this.outputTokens, settings };
  }

  /** Continue-as-new only between LLM turns, when Temporal suggests it or the test's threshold is reached. */
  shouldContinueAsNew(): boolean {
    return (
      this.stepsThisExecution > 0 &&
      (workflowInfo().continueAsNewSuggested || this.stepsThisExecution >= (this.input.continueAsNewAfterSteps ?? Infinity))
    );
  }
}
