import { WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { updateRefusedProblem } from '../../api/services/update-refusals.js';
import { RunUpdateFailureTypes } from '../../workflows/agent-run/definitions.js';

const refused = (type: string, message = 'refused') =>
  new WorkflowUpdateFailedError('Workflow Update failed', ApplicationFailure.nonRetryable(message, type));

describe('an Update the run refuses → problem type', () => {
  it.each([
    [RunUpdateFailureTypes.noFollowUpPending, 'no-follow-up-pending'],
    [RunUpdateFailureTypes.approvalNotPending, 'approval-not-pending'],
    [RunUpdateFailureTypes.agentBusy, 'agent-busy'],
    [RunUpdateFailureTypes.notAConversation, 'not-a-conversation'],
  ])('%s answers 409 %s', (type, kind) => {
    const problem = updateRefusedProblem(refused(type), 'The message');
    expect({ kind: problem.kind, status: problem.status }).toEqual({ kind, status: 409 });
  });

  it("gives each reason its own type, and tells the person what the run said", () => {
    const kinds = Object.values(RunUpdateFailureTypes).map((type) => updateRefusedProblem(refused(type), 'x').kind);
    expect(new Set(kinds).size).toBe(kinds.length);
    expect(updateRefusedProblem(refused(RunUpdateFailureTypes.agentBusy, 'The agent is still working'), 'The message').detail).toBe(
      'The message was not accepted: The agent is still working.',
    );
  });

  it('keeps a failure of a type the run does not declare a plain conflict', () => {
    expect(updateRefusedProblem(refused('SomethingElse'), 'The decision').kind).toBe('conflict');
    expect(updateRefusedProblem(new WorkflowUpdateFailedError('failed', undefined), 'The decision').kind).toBe('conflict');
  });
});
