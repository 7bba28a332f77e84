import {
  ActivityFailure,
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  condition,
  ContinueAsNew,
  continueAsNew,
  defineQuery,
  defineUpdate,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
  type ActivityOptions,
} from '@temporalio/workflow';
import type { AgentRunActivities, RunOutcome, RunSettings, ToolCallPlan } from '../activities/agent-run.js';
import { NonRetryableFailureTypes, RunFailureTypes } from '../activities/failure-types.js';
import { RunStatusSearchAttribute } from './search-attributes.js';

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

export type RunStatus = 'running' | 'awaiting_approval' | 'sleeping' | 'completed' | 'failed' | 'cancelled';

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
export const runStateQuery = defineQuery<{ status: RunStatus; step: number; pendingApprovals: string[]; queuedMessages: number }>('runState');

/** Delivers a person's message (a conversation_messages row) to a conversation; used with update-with-start. */
export const postMessageUpdate = defineUpdate<{ messageId: string; queued: boolean; interrupted: boolean }, [{ messageId: string }]>('postMessage');

/** Ends a pending follow-up wait now: the run resumes at once instead of when its timer fires. */
export const resumeFollowUpUpdate = defineUpdate<{ resumed: true }>('resumeFollowUp');

/** Thrown by the resumeFollowUp validator when the run is not waiting for a follow-up; the API maps it to 409. */
export const NO_FOLLOW_UP_PENDING = 'NoFollowUpPending';

/** Thrown by the postMessage validator when the agent is busy and its policy is `reject`; the API maps it to 409. */
export const AGENT_BUSY = 'AgentBusy';

/** Thrown by the update validator; the API maps it to 409. */
export const APPROVAL_NOT_PENDING = 'ApprovalNotPending';

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
const bookkeeping = proxyActivities<AgentRunActivities>(bookkeepingOptions);

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
const runStart = proxyActivities<AgentRunActivities>(runStartOptions);

/**
 * Starting and finishing a run are one short, idempotent transaction each (keyed by the event's
 * seq), so they run as local activities: no activity task round trip through the server and
 * fewer history events, same timeouts and retries. Executions recorded before this change
 * replay with the regular activities (`patched`, decided once per execution).
 */
const LOCAL_BOOKKEEPING_PATCH = 'agent-run-local-start-finish';
const localRunStart = proxyLocalActivities<AgentRunActivities>(runStartOptions);
const localBookkeeping = proxyLocalActivities<AgentRunActivities>(bookkeepingOptions);

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
      NonRetryableFailureTypes.runBudgetExceeded,
      NonRetryableFailureTypes.orgQuotaExceeded,
    ],
  },
};

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
 * One agent run: the LLM answers the run's input under the agent's instructions, calling tools
 * (OpenAI function calling) until it gives a final answer, reaches the agent's step limit, or
 * exhausts a budget. The workflow carries ids, sequence numbers, tool names and small flags;
 * the transcript, tool arguments and results live in Postgres (run_events).
 */
export async function agentRun(input: AgentRunInput): Promise<AgentRunResult> {
  const ref = { orgId: input.orgId, runId: input.runId };
  const heartbeat = input.heartbeatTimeoutSeconds ? { heartbeatTimeout: input.heartbeatTimeoutSeconds * 1000 } : {};
  // Event sequence numbers come from workflow state, so they are identical on replay and
  // activity retries can insert "their" event idempotently. They survive continue-as-new.
  let seq = input.resume?.seq ?? 0;
  const nextSeq = () => ++seq;
  let step = input.resume?.step ?? 0;
  let inputTokens = input.resume?.inputTokens ?? 0;
  let outputTokens = input.resume?.outputTokens ?? 0;
  let status: RunStatus = 'running';
  const approvals = new Map<string, { state: ApprovalState }>();
  // Conversation state: queued message ids (ids only; the text stays in conversation_messages).
  const queue: string[] = [...(input.conversation?.queue ?? [])];
  let settings: RunSettings | undefined = input.resume?.settings;
  let turn: CancellationScope | undefined;
  let interruptRequested = false;

  const setStatus = (next: RunStatus, details: string) => {
    status = next;
    upsertSearchAttributes([{ key: RunStatusSearchAttribute, value: next }]);
    setCurrentDetails(details);
  };

  setHandler(runStateQuery, () => ({
    status,
    step,
    pendingApprovals: [...approvals].filter(([, a]) => a.state === 'pending').map(([id]) => id),
    queuedMessages: queue.length,
  }));

  // Set while a schedule_follow_up timer runs; the update ends the wait early.
  let followUp: { resumeRequested: boolean } | undefined;
  setHandler(
    resumeFollowUpUpdate,
    () => {
      followUp!.resumeRequested = true;
      return { resumed: true as const };
    },
    {
      validator: () => {
        if (!followUp || followUp.resumeRequested) throw ApplicationFailure.nonRetryable('The run is not waiting for a follow-up', NO_FOLLOW_UP_PENDING);
      },
    },
  );

  setHandler(
    decideApprovalUpdate,
    async ({ approvalId, decision, responseId }) => {
      const approval = approvals.get(approvalId)!;
      // Synchronously, before any await: a second decision arriving now fails the validator.
      approval.state = 'deciding';
      await bookkeeping.recordApprovalDecision({ ...ref, seq: nextSeq(), approvalId, decision, responseId });
      approval.state = decision === 'approve' ? 'approved' : 'rejected';
      return { approvalId, status: approval.state };
    },
    {
      validator: ({ approvalId }) => {
        const approval = approvals.get(approvalId);
        if (!approval) throw ApplicationFailure.nonRetryable(`Approval ${approvalId} is not open on this run`, APPROVAL_NOT_PENDING);
        if (approval.state !== 'pending') {
          throw ApplicationFailure.nonRetryable(`Approval ${approvalId} is already ${approval.state}`, APPROVAL_NOT_PENDING);
        }
      },
    },
  );

  // Asked first, before any other command, so it is decided identically on every replay.
  const localStartFinish = patched(LOCAL_BOOKKEEPING_PATCH);
  const startFinish = localStartFinish ? { start: localRunStart, finish: localBookkeeping } : { start: runStart, finish: bookkeeping };

  const finish = (outcome: RunOutcome) =>
    // Recording the outcome must happen even when the run itself was cancelled.
    CancellationScope.nonCancellable(async () => {
      await startFinish.finish.finishRun({ ...ref, seq: nextSeq(), outcome });
      upsertSearchAttributes([{ key: RunStatusSearchAttribute, value: outcome.status }]);
      setCurrentDetails(`Run ${outcome.status} after ${step} step(s)`);
    });

  /** Waits for a person's decision on an approval; returns how it ended. */
  async function awaitDecision(approvalId: string, timeoutSeconds: number): Promise<'approved' | 'rejected' | 'expired'> {
    const approval = approvals.get(approvalId)!;
    const decided = await condition(() => approval.state !== 'pending', timeoutSeconds * 1000);
    if (!decided) {
      approval.state = 'expired';
      await bookkeeping.recordApprovalDecision({ ...ref, seq: nextSeq(), approvalId, decision: 'expire' });
      return 'expired';
    }
    await condition(() => approval.state === 'approved' || approval.state === 'rejected');
    return approval.state as 'approved' | 'rejected';
  }

  async function runToolCall(llmSeq: number, call: ToolCallPlan, approvalTimeoutSeconds: number): Promise<void> {
    const label = call.tool ?? 'unknown tool';
    const tools = (seqOfCall: number) =>
      proxyActivities<AgentRunActivities>({ ...toolOptions, ...heartbeat, activityId: `tool-${seqOfCall}`, summary: `${label} (step ${step})` });
    const callRef = { ...ref, llmSeq, index: call.index };

    if (call.needsApproval && call.tool) {
      const approvalId = uuid4();
      setStatus('awaiting_approval', `Waiting for approval of ${label}`);
      // Open in workflow state before the row exists: a person may decide the moment it commits.
      approvals.set(approvalId, { state: 'pending' });
      await bookkeeping.requestApproval({ ...callRef, seq: nextSeq(), approvalId, kind: 'approval', timeoutSeconds: approvalTimeoutSeconds });
      const decision = await awaitDecision(approvalId, approvalTimeoutSeconds);
      setStatus('running', `Step ${step}`);
      if (decision !== 'approved') {
        await bookkeeping.completeHumanStep({ ...callRef, seq: nextSeq(), approvalId, outcome: decision });
        return;
      }
    }

    const resultSeq = nextSeq();
    const result = await tools(resultSeq).executeTool({ ...callRef, seq: resultSeq });
    if (result.outcome !== 'control') return;

    if (result.control.type === 'sleep') {
      // Open for resumeFollowUp before the run reads as sleeping anywhere: a person who sees
      // 'sleeping' in the API (written by setRunStatus below) and resumes must not get a 409.
      const waiting = { resumeRequested: false };
      followUp = waiting;
      setStatus('sleeping', `Follow-up in ${result.control.seconds} s`);
      await bookkeeping.setRunStatus({ ...ref, status: 'sleeping' });
      // A durable timer: survives worker restarts and deploys; cancelling the run cancels it, and
      // resumeFollowUp ends it early. condition() with a timeout starts the same single timer
      // that sleep() did, so histories recorded before the update existed replay unchanged.
      const early = await condition(() => waiting.resumeRequested, result.control.seconds * 1000);
      followUp = undefined;
      setStatus('running', `Step ${step}`);
      await bookkeeping.setRunStatus({ ...ref, status: 'running', event: { seq: nextSeq(), type: 'follow_up.resumed', payload: { early } } });
    } else {
      const approvalId = uuid4();
      setStatus('awaiting_approval', 'Waiting for a person to answer');
      approvals.set(approvalId, { state: 'pending' });
      await bookkeeping.requestApproval({ ...callRef, seq: nextSeq(), approvalId, kind: 'input', timeoutSeconds: approvalTimeoutSeconds });
      const decision = await awaitDecision(approvalId, approvalTimeoutSeconds);
      setStatus('running', `Step ${step}`);
      await bookkeeping.completeHumanStep({
        ...callRef,
        seq: nextSeq(),
        approvalId,
        outcome: decision === 'approved' ? 'answered' : decision,
      });
    }
  }


  setHandler(
    postMessageUpdate,
    ({ messageId }) => {
      const busy = turn !== undefined;
      queue.push(messageId);
      const interrupt = busy && settings?.busyPolicy === 'interrupt';
      if (interrupt) {
        interruptRequested = true;
        turn!.cancel();
      }
      return { messageId, queued: busy && !interrupt, interrupted: interrupt };
    },
    {
      validator: (_message: { messageId: string }) => {
        if (!input.conversation) throw ApplicationFailure.nonRetryable('This run is not a conversation', AGENT_BUSY);
        if (turn !== undefined && settings?.busyPolicy === 'reject') {
          throw ApplicationFailure.nonRetryable('The agent is still working on the previous message; send this one when it has answered', AGENT_BUSY);
        }
      },
    },
  );

  /** LLM turns with tool calls until a final answer (a conversation's turn); returns the answer's seq. */
  async function answer(current: RunSettings): Promise<number> {
    for (let turnSteps = 0; ; turnSteps++) {
      const done = await answerOneStep(current, turnSteps);
      if (done !== undefined) return done;
    }
  }

  let stepsThisExecution = 0;
  const shouldContinueAsNew = () =>
    stepsThisExecution > 0 && (workflowInfo().continueAsNewSuggested || stepsThisExecution >= (input.continueAsNewAfterSteps ?? Infinity));

  try {
    setStatus('running', input.resume ? `Resumed at step ${step}` : 'Starting');
    settings ??= await startFinish.start.startRun({ ...ref, seq: nextSeq() });
    const current = settings;

    if (!input.conversation) {
      // A single task: continue-as-new may only happen between LLM turns, so the loop of
      // `answer` is unrolled here with that check at its top.
      for (;;) {
        if (shouldContinueAsNew()) {
          await condition(allHandlersFinished);
          return await continueAsNew<typeof agentRun>({ ...input, resume: { seq, step, inputTokens, outputTokens, settings: current } });
        }
        const done = await answerOneStep(current, step);
        if (done !== undefined) {
          await finish({ status: 'completed', outputSeq: done });
          await condition(allHandlersFinished);
          return { status: 'completed', inputTokens, outputTokens };
        }
      }
    }

    let lastAnswerSeq = input.conversation.lastAnswerSeq;
    for (;;) {
      if (queue.length === 0) {
        if (shouldContinueAsNew()) {
          await condition(allHandlersFinished);
          return await continueAsNew<typeof agentRun>({
            ...input,
            conversation: { ...input.conversation, queue: [], ...(lastAnswerSeq !== undefined ? { lastAnswerSeq } : {}) },
            resume: { seq, step, inputTokens, outputTokens, settings: current },
          });
        }
        setStatus('sleeping', 'Waiting for the next message');
        await bookkeeping.setRunStatus({ ...ref, status: 'sleeping' });
        const arrived = await condition(() => queue.length > 0, input.conversation.idleTimeoutSeconds * 1000);
        if (!arrived) {
          if (lastAnswerSeq === undefined) await finish({ status: 'cancelled' });
          else await finish({ status: 'completed', outputSeq: lastAnswerSeq });
          await condition(allHandlersFinished);
          return { status: 'completed', inputTokens, outputTokens };
        }
        setStatus('running', 'Answering');
      }
      const messageId = queue.shift()!;
      await bookkeeping.acceptMessage({ ...ref, seq: nextSeq(), messageId });
      interruptRequested = false;
      turn = new CancellationScope();
      try {
        lastAnswerSeq = await turn.run(() => answer(current));
      } catch (err) {
        // A newer message interrupted this turn (busy policy `interrupt`); the run goes on.
        if (!(isCancellation(err) && interruptRequested && !CancellationScope.current().consideredCancelled)) throw err;
        await bookkeeping.setRunStatus({ ...ref, status: 'running', event: { seq: nextSeq(), type: 'turn.interrupted' } });
      } finally {
        turn = undefined;
      }
    }
  } catch (err) {
    if (err instanceof ContinueAsNew) throw err;
    if (isCancellation(err)) {
      await finish({ status: 'cancelled' });
      throw err;
    }
    const failure = describeFailure(err);
    await finish({ status: 'failed', error: failure });
    throw ApplicationFailure.nonRetryable(failure.message, failure.type);
  }

  /** One LLM turn and its tool calls; the answer's seq when it is final. `stepsSoFar` counts against maxSteps. */
  async function answerOneStep(current: RunSettings, stepsSoFar: number): Promise<number | undefined> {
    if (stepsSoFar >= current.maxSteps) {
      throw ApplicationFailure.nonRetryable(
        `The run reached the agent's limit of ${current.maxSteps} steps without a final answer`,
        RunFailureTypes.stepLimitReached,
      );
    }
    step += 1;
    stepsThisExecution += 1;
    setCurrentDetails(`Step ${step}: thinking`);
    const llmSeq = nextSeq();
    const reply = await proxyActivities<AgentRunActivities>({ ...llmOptions, ...heartbeat, summary: `LLM turn ${step}` }).callLlm({ ...ref, seq: llmSeq });
    inputTokens += reply.inputTokens;
    outputTokens += reply.outputTokens;
    if (reply.toolCalls.length === 0) return llmSeq;
    for (const call of reply.toolCalls) {
      setCurrentDetails(`Step ${step}: ${call.tool ?? 'unknown tool'}`);
      await runToolCall(llmSeq, call, current.approvalTimeoutSeconds);
    }
    return undefined;
  }
}

function describeFailure(err: unknown): { type: string; message: string } {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof ApplicationFailure) {
    return { type: cause.type ?? 'Error', message: cause.message };
  }
  if (cause instanceof Error) return { type: cause.name, message: cause.message };
  return { type: 'Error', message: String(cause) };
}
