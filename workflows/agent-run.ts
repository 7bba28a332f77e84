import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  proxyActivities,
} from '@temporalio/workflow';
import type { AgentRunActivities, RunOutcome } from '../activities/agent-run.js';
import { NonRetryableFailureTypes } from '../activities/failure-types.js';

export interface AgentRunInput {
  orgId: string;
  agentId: string;
  runId: string;
}

export interface AgentRunResult {
  status: 'completed';
  inputTokens: number;
  outputTokens: number;
}

// Database bookkeeping is quick; it retries until Postgres is back (a deploy, a failover).
const bookkeeping = proxyActivities<AgentRunActivities>({
  startToCloseTimeout: '30 seconds',
  retry: {
    initialInterval: '1 second',
    backoffCoefficient: 2,
    maximumInterval: '30 seconds',
    nonRetryableErrorTypes: [NonRetryableFailureTypes.runNotFound],
  },
});

// The run row is committed by the API just after the start; a row that never appears means the
// API's transaction failed after Temporal accepted the workflow, and the run gives up.
const runStart = proxyActivities<AgentRunActivities>({
  startToCloseTimeout: '30 seconds',
  retry: {
    initialInterval: '500 milliseconds',
    backoffCoefficient: 2,
    maximumInterval: '30 seconds',
    maximumAttempts: 15,
    nonRetryableErrorTypes: [NonRetryableFailureTypes.runNotFound],
  },
});

// A model can think for minutes; the heartbeat timeout notices a dead worker long before that.
// 429s wait for the provider's Retry-After (nextRetryDelay overrides the backoff below).
const llm = proxyActivities<AgentRunActivities>({
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
    ],
  },
});

/**
 * One agent run: the LLM answers the run's input under the agent's instructions, and the run's
 * row and event log in Postgres follow every step. The workflow carries ids only.
 */
export async function agentRun(input: AgentRunInput): Promise<AgentRunResult> {
  const ref = { orgId: input.orgId, runId: input.runId };
  // Event sequence numbers come from workflow state, so they are identical on replay and
  // activity retries can insert "their" event idempotently.
  let seq = 0;
  const nextSeq = () => ++seq;

  const finish = (outcome: RunOutcome) =>
    // Recording the outcome must happen even when the run itself was cancelled.
    CancellationScope.nonCancellable(() => bookkeeping.finishRun({ ...ref, seq: nextSeq(), outcome }));

  try {
    await runStart.startRun({ ...ref, seq: nextSeq() });
    const answerSeq = nextSeq();
    const answer = await llm.callLlm({ ...ref, seq: answerSeq });
    await finish({ status: 'completed', outputSeq: answerSeq });
    return { status: 'completed', inputTokens: answer.inputTokens, outputTokens: answer.outputTokens };
  } catch (err) {
    if (isCancellation(err)) {
      await finish({ status: 'cancelled' });
      throw err;
    }
    const failure = describeFailure(err);
    await finish({ status: 'failed', error: failure });
    throw ApplicationFailure.nonRetryable(failure.message, failure.type);
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
