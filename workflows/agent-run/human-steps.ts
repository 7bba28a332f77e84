/**
 * The steps of a run that wait for a person: approvals of tool calls, questions asked through
 * request_human_input, and follow-up timers a person may end early.
 */
import { ApplicationFailure, condition, setHandler, uuid4 } from '@temporalio/workflow';
import type { ToolCallRef } from '../../activities/agent-run/contract.js';
import { bookkeeping } from './activity-options.js';
import { decideApprovalUpdate, resumeFollowUpUpdate, RunUpdateFailureTypes } from './definitions.js';
import type { AgentRunState } from './state.js';

/** The updates through which people act on a run: resumeFollowUp, then decideApproval. */
export function registerHumanStepHandlers(run: AgentRunState): void {
  setHandler(
    resumeFollowUpUpdate,
    () => {
      run.followUp!.resumeRequested = true;
      return { resumed: true as const };
    },
    {
      validator: () => {
        if (!run.followUp || run.followUp.resumeRequested) throw ApplicationFailure.nonRetryable('The run is not waiting for a follow-up', RunUpdateFailureTypes.noFollowUpPending);
      },
    },
  );

  setHandler(
    decideApprovalUpdate,
    async ({ approvalId, decision, responseId }) => {
      const approval = run.approvals.get(approvalId)!;
      // Synchronously, before any await: a second decision arriving now fails the validator.
      approval.state = 'deciding';
      await bookkeeping.recordApprovalDecision({ ...run.ref, seq: run.nextSeq(), approvalId, decision, responseId });
      approval.state = decision === 'approve' ? 'approved' : 'rejected';
      return { approvalId, status: approval.state };
    },
    {
      validator: ({ approvalId }) => {
        const approval = run.approvals.get(approvalId);
        if (!approval) throw ApplicationFailure.nonRetryable(`Approval ${approvalId} is not open on this run`, RunUpdateFailureTypes.approvalNotPending);
        if (approval.state !== 'pending') {
          throw ApplicationFailure.nonRetryable(`Approval ${approvalId} is already ${approval.state}`, RunUpdateFailureTypes.approvalNotPending);
        }
      },
    },
  );
}

/** Waits for a person's decision on an approval; returns how it ended. */
async function awaitDecision(run: AgentRunState, approvalId: string, timeoutSeconds: number): Promise<'approved' | 'rejected' | 'expired'> {
  const approval = run.approvals.get(approvalId)!;
  const decided = await condition(() => approval.state !== 'pending', timeoutSeconds * 1000);
  if (!decided) {
    approval.state = 'expired';
    await bookkeeping.recordApprovalDecision({ ...run.ref, seq: run.nextSeq(), approvalId, decision: 'expire' });
    return 'expired';
  }
  await condition(() => approval.state === 'approved' || approval.state === 'rejected');
  return approval.state as 'approved' | 'rejected';
}

/** Opens an approval (or a question) for a tool call and waits until a person decides or it expires. */
async function askPerson(
  run: AgentRunState,
  call: Omit<ToolCallRef, 'seq'>,
  kind: 'approval' | 'input',
  details: string,
  timeoutSeconds: number,
): Promise<{ approvalId: string; decision: 'approved' | 'rejected' | 'expired' }> {
  const approvalId = uuid4();
  run.setStatus('awaiting_approval', details);
  // Open in workflow state before the row exists: a person may decide the moment it commits.
  run.approvals.set(approvalId, { state: 'pending' });
  await bookkeeping.requestApproval({ ...call, seq: run.nextSeq(), approvalId, kind, timeoutSeconds });
  const decision = await awaitDecision(run, approvalId, timeoutSeconds);
  run.setStatus('running', `Step ${run.step}`);
  return { approvalId, decision };
}

/** Asks for approval of a tool call; false when it was rejected or expired (the model is told so). */
export async function approveToolCall(run: AgentRunState, call: Omit<ToolCallRef, 'seq'>, label: string, timeoutSeconds: number): Promise<boolean> {
  const { approvalId, decision } = await askPerson(run, call, 'approval', `Waiting for approval of ${label}`, timeoutSeconds);
  if (decision === 'approved') return true;
  await bookkeeping.completeHumanStep({ ...call, seq: run.nextSeq(), approvalId, outcome: decision });
  return false;
}

/** request_human_input: a person's answer (or its absence) becomes the tool's result. */
export async function askForInput(run: AgentRunState, call: Omit<ToolCallRef, 'seq'>, timeoutSeconds: number): Promise<void> {
  const { approvalId, decision } = await askPerson(run, call, 'input', 'Waiting for a person to answer', timeoutSeconds);
  await bookkeeping.completeHumanStep({ ...call, seq: run.nextSeq(), approvalId, outcome: decision === 'approved' ? 'answered' : decision });
}

/** schedule_follow_up: a durable wait that a person may end early through resumeFollowUp. */
export async function awaitFollowUp(run: AgentRunState, seconds: number): Promise<void> {
  // Open for resumeFollowUp before the run reads as sleeping anywhere: a person who sees
  // 'sleeping' in the API (written by setRunStatus below) and resumes must not get a 409.
  const waiting = { resumeRequested: false };
  run.followUp = waiting;
  run.setStatus('sleeping', `Follow-up in ${seconds} s`);
  await bookkeeping.setRunStatus({ ...run.ref, status: 'sleeping' });
  // A durable timer: survives worker restarts and deploys; cancelling the run cancels it, and
  // resumeFollowUp ends it early. condition() with a timeout starts the same single timer
  // that sleep() did, so histories recorded before the update existed replay unchanged.
  const early = await condition(() => waiting.resumeRequested, seconds * 1000);
  run.followUp = undefined;
  run.setStatus('running', `Step ${run.step}`);
  await bookkeeping.setRunStatus({ ...run.ref, status: 'running', event: { seq: run.nextSeq(), type: 'follow_up.resumed', payload: { early } } });
}
