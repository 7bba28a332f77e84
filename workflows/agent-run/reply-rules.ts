/**
 * The team's rules at a conversation's turn: the lead's pending messages are taken into the
 * transcript, then answered, or recorded and held (the agent is paused). The rules are read by an
 * activity each time, so a change to the agent applies at the next turn; the decision is in the
 * history, so replay never re-reads them.
 */
import type { ReplyGate } from '../../lib/agent-rules.js';
import { bookkeeping, replyRules } from './activity-options.js';
import type { AgentRunState } from './state.js';

/** Takes the next message(s) into the transcript; true when the agent should answer now. */
export async function takePendingMessages(run: AgentRunState): Promise<boolean> {
  const gate: ReplyGate = await replyRules.checkReplyRules(run.ref);
  // A held turn records everything pending: nothing is answered, nothing is lost.
  const take = gate.action === 'answer' ? 1 : run.queue.length;
  for (let i = 0; i < take && run.queue.length > 0; i++) {
    await bookkeeping.acceptMessage({ ...run.ref, seq: run.nextSeq(), messageId: run.queue.shift()! });
  }
  if (gate.action === 'answer') return true;
  await bookkeeping.setRunStatus({ ...run.ref, status: 'sleeping', event: { seq: run.nextSeq(), type: 'reply.held', payload: { reason: gate.reason } } });
  run.setStatus('sleeping', `Not answering: ${gate.reason}`);
  return false;
}
