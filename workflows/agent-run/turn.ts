/** The turn loop: an LLM turn, then the tool calls it asked for, until the model gives a final answer. */
import { ApplicationFailure, allHandlersFinished, condition, continueAsNew, patched, setCurrentDetails } from '@temporalio/workflow';
import type { RunOutcome, RunSettings, ToolCallPlan } from '../../activities/agent-run/contract.js';
import { RunFailureTypes } from '../../activities/failure-types.js';
import { handoffSteps, llmStep, LOCAL_TOOLS_PATCH, localToolStep, runsLocally, toolStep } from './activity-options.js';
import type { AgentRunResult, AgentRunWorkflow } from './definitions.js';
import { approveToolCall, askForInput, awaitFollowUp } from './human-steps.js';
import type { AgentRunState } from './state.js';

/** One LLM turn and its tool calls; the answer's seq when it is final. `stepsSoFar` counts against maxSteps. */
export async function answerOneStep(run: AgentRunState, current: RunSettings, stepsSoFar: number): Promise<number | undefined> {
  if (stepsSoFar >= current.maxSteps) {
    throw ApplicationFailure.nonRetryable(
      `The run reached the agent's limit of ${current.maxSteps} steps without a final answer`,
      RunFailureTypes.stepLimitReached,
    );
  }
  run.step += 1;
  run.stepsThisExecution += 1;
  setCurrentDetails(`Step ${run.step}: thinking`);
  const llmSeq = run.nextSeq();
  const reply = await llmStep(run.heartbeat, `LLM turn ${run.step}`).callLlm({ ...run.ref, seq: llmSeq });
  run.inputTokens += reply.inputTokens;
  run.outputTokens += reply.outputTokens;
  if (reply.toolCalls.length === 0) return llmSeq;
  for (const call of reply.toolCalls) {
    setCurrentDetails(`Step ${run.step}: ${call.tool ?? 'unknown tool'}`);
    await runToolCall(run, llmSeq, call, current.approvalTimeoutSeconds);
  }
  return undefined;
}

async function runToolCall(run: AgentRunState, llmSeq: number, call: ToolCallPlan, approvalTimeoutSeconds: number): Promise<void> {
  const label = call.tool ?? 'unknown tool';
  const callRef = { ...run.ref, llmSeq, index: call.index };

  if (call.needsApproval && call.tool) {
    if (!(await approveToolCall(run, callRef, label, approvalTimeoutSeconds))) return;
  }

  const resultSeq = run.nextSeq();
  const summary = `${label} (step ${run.step})`;
  // `runsLocally` first: an effect tool never asks, so its command stays the same either way.
  const step = runsLocally(call.kind) && patched(LOCAL_TOOLS_PATCH) ? localToolStep(summary) : toolStep(run.heartbeat, resultSeq, summary);
  const result = await step.executeTool({ ...callRef, seq: resultSeq });
  if (result.outcome !== 'control') return;

  if (result.control.type === 'sleep') await awaitFollowUp(run, result.control.seconds);
  else if (result.control.type === 'handoff') await handoffSteps.requestHandoff({ ...run.ref, seq: run.nextSeq(), reason: 'agent_requested', key: `tool:${resultSeq}` });
  else await askForInput(run, callRef, approvalTimeoutSeconds);
}

/** LLM turns with tool calls until a final answer (a conversation's turn); returns the answer's seq. */
export async function answer(run: AgentRunState, current: RunSettings): Promise<number> {
  for (let turnSteps = 0; ; turnSteps++) {
    const done = await answerOneStep(run, current, turnSteps);
    if (done !== undefined) return done;
  }
}

/**
 * A single task: answer the run's input. Continue-as-new may only happen between LLM turns, so
 * the loop of `answer` is unrolled here with that check at its top.
 */
export async function performTask(
  run: AgentRunState,
  current: RunSettings,
  finish: (outcome: RunOutcome) => Promise<void>,
): Promise<AgentRunResult> {
  for (;;) {
    if (run.shouldContinueAsNew()) {
      await condition(allHandlersFinished);
      return await continueAsNew<AgentRunWorkflow>({ ...run.input, resume: run.resumePoint(current) });
    }
    const done = await answerOneStep(run, current, run.step);
    if (done !== undefined) {
      await finish({ status: 'completed', outputSeq: done });
      await condition(allHandlersFinished);
      return { status: 'completed', inputTokens: run.inputTokens, outputTokens: run.outputTokens };
    }
  }
}
