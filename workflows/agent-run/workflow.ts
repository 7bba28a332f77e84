import { ActivityFailure, ApplicationFailure, CancellationScope, ContinueAsNew, isCancellation, patched, setCurrentDetails, setHandler, upsertSearchAttributes } from '@temporalio/workflow';
import type { RunOutcome } from '../../activities/agent-run/contract.js';
import { RunStatusSearchAttribute } from '../search-attributes.js';
import { bookkeeping, LOCAL_BOOKKEEPING_PATCH, localBookkeeping, localRunStart, runStart } from './activity-options.js';
import { converse, registerConversationHandler } from './conversation.js';
import { runStateQuery, type AgentRunInput, type AgentRunResult } from './definitions.js';
import { registerHumanStepHandlers } from './human-steps.js';
import { AgentRunState } from './state.js';
import { performTask } from './turn.js';

/**
 * One agent run: the LLM answers the run's input under the agent's instructions, calling tools
 * (OpenAI function calling) until it gives a final answer, reaches the agent's step limit, or
 * exhausts a budget. The workflow carries ids, sequence numbers, tool names and small flags;
 * the transcript, tool arguments and results live in Postgres (run_events).
 */
export async function agentRun(input: AgentRunInput): Promise<AgentRunResult> {
  const run = new AgentRunState(input);
  setHandler(runStateQuery, () => run.snapshot());
  registerHumanStepHandlers(run);

  // Asked first, before any other command, so it is decided identically on every replay.
  const localStartFinish = patched(LOCAL_BOOKKEEPING_PATCH);
  const startFinish = localStartFinish ? { start: localRunStart, finish: localBookkeeping } : { start: runStart, finish: bookkeeping };

  const finish = (outcome: RunOutcome) =>
    // Recording the outcome must happen even when the run itself was cancelled.
    CancellationScope.nonCancellable(async () => {
      await startFinish.finish.finishRun({ ...run.ref, seq: run.nextSeq(), outcome });
      upsertSearchAttributes([{ key: RunStatusSearchAttribute, value: outcome.status }]);
      setCurrentDetails(`Run ${outcome.status} after ${run.step} step(s)`);
    });

  registerConversationHandler(run);

  try {
    run.setStatus('running', input.resume ? `Resumed at step ${run.step}` : 'Starting');
    run.settings ??= await startFinish.start.startRun({ ...run.ref, seq: run.nextSeq() });
    const current = run.settings;
    return input.conversation ? await converse(run, input.conversation, current, finish) : await performTask(run, current, finish);
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
}

function describeFailure(err: unknown): { type: string; message: string } {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof ApplicationFailure) {
    return { type: cause.type ?? 'Error', message: cause.message };
  }
  if (cause instanceof Error) return { type: cause.name, message: cause.message };
  return { type: 'Error', message: String(cause) };
}
