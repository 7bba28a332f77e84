/**
 * The team's rules at a conversation's turn: the lead's pending messages are taken into the
 * transcript, then answered, or recorded and held (the agent is paused, or the conversation is
 * with people: handed off, or a pending message asks for a person, which hands it off now; or
 * the lead is outside the agent's stages), or deferred until the working hours open. With a response delay
 * the turn first waits until the lead has been quiet that long (a durable timer; each new
 * message restarts it) and then answers everything that arrived in one reply. The rules are read
 * by an activity each time, so a change to the agent applies at the next turn; the decisions are
 * in the history, so replay never re-reads them.
 */
import { condition, setCurrentDetails, sleep } from '@temporalio/workflow';
import type { ReplyGate } from '../../lib/agent-rules.js';
import { bookkeeping, handoffSteps, replyRules } from './activity-options.js';
import type { AgentRunState } from './state.js';

/** Takes the next message(s) into the transcript; true when the agent should answer now. */
export async function takePendingMessages(run: AgentRunState): Promise<boolean> {
  const check = () => replyRules.checkReplyRules({ ...run.ref, pending: [...run.queue] });
  let gate: ReplyGate = await check();
  // Histories recorded before the delay existed carry no `delaySeconds`: no timer, as then.
  const delaySeconds = gate.action === 'answer' ? gate.delaySeconds : undefined;
  if (delaySeconds) {
    await quietFor(run, delaySeconds);
    // The rules may have changed while the lead was typing (paused, handed off).
    gate = await check();
  }
  // One message per turn when answering at once (as before the rules); everything pending after
  // a delay (one reply reads the burst) or when holding (nothing answered, nothing lost).
  const take = gate.action === 'answer' && !delaySeconds ? 1 : run.queue.length;
  const firstPending = run.queue[0];
  for (let i = 0; i < take && run.queue.length > 0; i++) {
    await bookkeeping.acceptMessage({ ...run.ref, seq: run.nextSeq(), messageId: run.queue.shift()! });
  }
  if (gate.action === 'answer') return true;
  if (gate.action === 'defer') {
    // Outside working hours: the messages are in the transcript; the answer waits for the hours
    // to open (a durable timer, so a restart or deploy keeps it), then the rules are checked again.
    await bookkeeping.setRunStatus({ ...run.ref, status: 'sleeping', event: { seq: run.nextSeq(), type: 'reply.deferred', payload: { reason: gate.reason, seconds: gate.seconds } } });
    run.setStatus('sleeping', `Outside working hours: answering in ${gate.seconds} s`);
    await sleep(Math.min(gate.seconds, 7 * 86_400) * 1000);
    run.setStatus('running', 'Working hours open');
    return takePendingMessages(run);
  }
  if (gate.reason === 'handoff' && gate.request === 'lead_asked' && firstPending !== undefined) {
    await handoffSteps.requestHandoff({ ...run.ref, seq: run.nextSeq(), reason: 'lead_asked', key: `lead:${firstPending}` });
  }
  await bookkeeping.setRunStatus({ ...run.ref, status: 'sleeping', event: { seq: run.nextSeq(), type: 'reply.held', payload: { reason: gate.reason } } });
  run.setStatus('sleeping', `Not answering: ${gate.reason}`);
  return false;
}

/** Returns once no message has arrived for `seconds`; every arrival restarts the wait. */
async function quietFor(run: AgentRunState, seconds: number): Promise<void> {
  setCurrentDetails(`Waiting ${seconds} s for the lead to finish writing`);
  for (;;) {
    const seen = run.queue.length;
    if (!(await condition(() => run.queue.length > seen, seconds * 1000))) return;
  }
}
