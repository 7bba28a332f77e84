import type { WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { RunUpdateFailureTypes, type RunUpdateFailureType } from '../../workflows/agent-run/definitions.js';
import { ProblemError, type ProblemKind } from '../problems.js';

/** Each reason a run refuses an Update has a problem type of its own, so clients can branch on it. */
const problemKindOf: Record<RunUpdateFailureType, ProblemKind> = {
  [RunUpdateFailureTypes.noFollowUpPending]: 'no-follow-up-pending',
  [RunUpdateFailureTypes.approvalNotPending]: 'approval-not-pending',
  [RunUpdateFailureTypes.agentBusy]: 'agent-busy',
  [RunUpdateFailureTypes.notAConversation]: 'not-a-conversation',
};

function isRunUpdateFailureType(type: string | undefined | null): type is RunUpdateFailureType {
  return type != null && Object.hasOwn(problemKindOf, type);
}

/**
 * The problem for an Update the run's validator refused (a `WorkflowUpdateFailedError` whose
 * cause is the validator's `ApplicationFailure`). A failure of a type the run does not declare
 * (an update handler that threw) stays a plain `conflict`.
 */
export function updateRefusedProblem(err: WorkflowUpdateFailedError, what: string): ProblemError {
  const cause = err.cause;
  const type = cause instanceof ApplicationFailure ? cause.type : undefined;
  const kind = isRunUpdateFailureType(type) ? problemKindOf[type] : 'conflict';
  return new ProblemError(kind, `${what} was not accepted: ${cause?.message ?? err.message}.`);
}
