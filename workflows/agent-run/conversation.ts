/**
 * A conversation: the run answers messages that arrive through postMessage, one turn each, with
 * the agent's busy policy deciding what a message arriving mid-turn does (queue, reject,
 * interrupt), and ends after its idle timeout. Before each turn the team's rules decide whether
 * the agent answers at all (reply-rules.ts).
 */
import {
  ApplicationFailure,
  allHandlersFinished,
  CancellationScope,
  condition,
  continueAsNew,
  isCancellation,
  patched,
  setHandler,
} from '@temporalio/workflow';
import type { RunOutcome, RunSettings } from '../../activities/agent-run/contract.js';
import type { HandoffReason } from '../../lib/agent-rules.js';
import { bookkeeping, crmReply, handoffSteps, LEAD_MEMORY_PATCH, leadMemory, REPLY_RULES_PATCH, SEND_REPLY_PATCH } from './activity-options.js';
import { postMessageUpdate, requestHandoffUpdate, resumeConversationUpdate, RunUpdateFailureTypes, type AgentRunInput, type AgentRunResult, type AgentRunWorkflow } from './definitions.js';
import type { AgentRunState } from './state.js';
import { takePendingMessages } from './reply-rules.js';
import { answer } from './turn.js';

export function registerConversationHandler(run: AgentRunState): void {
  const onlyConversations = () => {
    if (!run.input.conversation) throw ApplicationFailure.nonRetryable('This run answers a single task; it is not a conversation', RunUpdateFailureTypes.notAConversation);
  };
  // Handoffs go through the workflow, so they are ordered with its turns; the state is in Postgres.
  setHandler(
    requestHandoffUpdate,
    async ({ reason, key }) => {
      const { started } = await handoffSteps.requestHandoff({ ...run.ref, seq: run.nextSeq(), reason, key });
      return { started };
    },
    { validator: (_request: { reason: HandoffReason; key: string }) => onlyConversations() },
  );
  setHandler(resumeConversationUpdate, () => handoffSteps.endHandoff(run.ref), { validator: onlyConversations });

  setHandler(
    postMessageUpdate,
    ({ messageId }) => {
      const busy = run.turn !== undefined;
      run.queue.push(messageId);
      const interrupt = busy && run.settings?.busyPolicy === 'interrupt';
      if (interrupt) {
        run.interruptRequested = true;
        run.turn!.cancel();
      }
      return { messageId, queued: busy && !interrupt, interrupted: interrupt };
    },
    {
      validator: (_message: { messageId: string }) => {
        if (!run.input.conversation) throw ApplicationFailure.nonRetryable('This run answers a single task; it is not a conversation', RunUpdateFailureTypes.notAConversation);
        if (run.turn !== undefined && run.settings?.busyPolicy === 'reject') {
          throw ApplicationFailure.nonRetryable('The agent is still working on the previous message; send this one when it has answered', RunUpdateFailureTypes.agentBusy);
        }
      },
    },
  );
}

export async function converse(
  run: AgentRunState,
  conversation: NonNullable<AgentRunInput['conversation']>,
  current: RunSettings,
  finish: (outcome: RunOutcome) => Promise<void>,
): Promise<AgentRunResult> {
  let lastAnswerSeq = conversation.lastAnswerSeq;
  for (;;) {
    if (run.queue.length === 0) {
      if (run.shouldContinueAsNew()) {
        await condition(allHandlersFinished);
        return await continueAsNew<AgentRunWorkflow>({
          ...run.input,
          conversation: { ...conversation, queue: [], ...(lastAnswerSeq !== undefined ? { lastAnswerSeq } : {}) },
          resume: run.resumePoint(current),
        });
      }
      run.setStatus('sleeping', 'Waiting for the next message');
      await bookkeeping.setRunStatus({ ...run.ref, status: 'sleeping' });
      const arrived = await condition(() => run.queue.length > 0, conversation.idleTimeoutSeconds * 1000);
      if (!arrived) {
        if (lastAnswerSeq === undefined) await finish({ status: 'cancelled' });
        else await finish({ status: 'completed', outputSeq: lastAnswerSeq });
        if (lastAnswerSeq !== undefined && patched(LEAD_MEMORY_PATCH)) {
          // After the outcome is recorded, so the run reads as ended at once. A failure here (the
          // model down for the whole retry budget), or a cancel arriving now, costs the memory,
          // never the outcome: the run has already completed.
          try {
            await leadMemory.rememberConversation(run.ref);
          } catch {
            // Logged by the worker with the activity failure; nothing to record on the run.
          }
        }
        await condition(allHandlersFinished);
        return { status: 'completed', inputTokens: run.inputTokens, outputTokens: run.outputTokens };
      }
      run.setStatus('running', 'Answering');
    }
    if (patched(REPLY_RULES_PATCH)) {
      // Paused: the lead's messages are recorded and not answered.
      if (!(await takePendingMessages(run))) continue;
    } else {
      await bookkeeping.acceptMessage({ ...run.ref, seq: run.nextSeq(), messageId: run.queue.shift()! });
    }
    run.interruptRequested = false;
    const turn = new CancellationScope();
    run.turn = turn;
    let answered: number | undefined;
    try {
      answered = lastAnswerSeq = await turn.run(() => answer(run, current));
    } catch (err) {
      // A newer message interrupted this turn (busy policy `interrupt`); the run goes on.
      if (!(isCancellation(err) && run.interruptRequested && !CancellationScope.current().consideredCancelled)) throw err;
      await bookkeeping.setRunStatus({ ...run.ref, status: 'running', event: { seq: run.nextSeq(), type: 'turn.interrupted' } });
    } finally {
      run.turn = undefined;
    }
    // Outside the turn: a message arriving now is queued, it does not interrupt a send. The
    // activity does nothing for a conversation that is not a lead's CRM thread.
    if (answered !== undefined && patched(SEND_REPLY_PATCH)) {
      // The next seq is where a `reply_failed` event would go; it is taken only when one was
      // written, so a conversation's events stay numbered without gaps.
      const outcome = await crmReply.sendReply({ ...run.ref, seq: run.seq + 1, answerSeq: answered });
      // One seq per event the step wrote (reply_failed, reply_quota_warning, or both).
      if (outcome === 'failed' || outcome === 'warned') run.nextSeq();
      if (outcome === 'failed_warned') {
        run.nextSeq();
        run.nextSeq();
      }
    }
  }
}
