import { WorkflowFailedError } from '@temporalio/client';
import type pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { startAgentTestStack, type AgentTestStack } from '../support/agent-stack.js';
import { createAgent, createOrgWithMembers, createRun } from '../support/db.js';
import { testDataConverter, type TestTemporal } from '../support/temporal.js';
import type { Payload } from '@temporalio/common';
import { agentRunWorkflowId } from '../../workflows/task-queues.js';
import { agentRun } from '../../workflows/agent-run/index.js';

describe('agentRun workflow', () => {
  let stack: AgentTestStack;
  let temporal: TestTemporal;
  let llm: FakeLlmServer;
  let admin: pg.Pool;
  let taskQueue: string;

  beforeAll(async () => {
    stack = await startAgentTestStack('agent-run-test');
    ({ temporal, llm, admin, taskQueue } = stack);
  });

  afterAll(async () => {
    await stack?.close();
  });

  beforeEach(() => llm.reset());

  async function newRun(input: string) {
    const { orgId } = await createOrgWithMembers(admin, ['owner']);
    const agentId = await createAgent(admin, orgId, { model: 'test/model-a', instructions: 'You are a test agent.' });
    const runId = await createRun(admin, orgId, agentId, { input });
    return { orgId, agentId, runId };
  }

  function execute(ids: { orgId: string; agentId: string; runId: string }) {
    return temporal.client.workflow.execute(agentRun, {
      taskQueue,
      workflowId: agentRunWorkflowId(ids.runId),
      args: [ids],
    });
  }

  async function runRow(runId: string) {
    const { rows } = await admin.query(`select status, output, error, input_tokens, output_tokens, started_at, completed_at from public.agent_runs where id = $1`, [runId]);
    return rows[0];
  }

  async function eventTypes(runId: string) {
    const { rows } = await admin.query(`select seq, type from public.run_events where run_id = $1 order by seq`, [runId]);
    return rows.map((r: { seq: number; type: string }) => `${r.seq}:${r.type}`);
  }

  it('completes a run against the LLM and records output, usage and events in Postgres', async () => {
    llm.enqueue({ kind: 'text', content: 'Hello from the model', usage: { inputTokens: 42, outputTokens: 7 } });
    const ids = await newRun('Say hello');

    const result = await execute(ids);

    expect(result).toEqual({ status: 'completed', inputTokens: 42, outputTokens: 7 });
    const row = await runRow(ids.runId);
    expect(row).toMatchObject({ status: 'completed', output: 'Hello from the model', error: null, input_tokens: 42, output_tokens: 7 });
    expect(row.started_at).toBeInstanceOf(Date);
    expect(row.completed_at).toBeInstanceOf(Date);
    expect(await eventTypes(ids.runId)).toEqual(['1:run.started', '2:llm.completed', '3:run.completed']);

    expect(llm.requests).toHaveLength(1);
    const body = llm.requests[0]!.body as { model: string; messages: Array<{ role: string; content: string }> };
    expect(body.model).toBe('test/model-a');
    expect(body.messages).toEqual([
      { role: 'system', content: 'You are a test agent.' },
      { role: 'user', content: 'Say hello' },
    ]);
    expect(llm.requests[0]!.headers.authorization).toBe('Bearer test-llm-key');
  });

  it('keeps tenant text out of the Temporal history: arguments and results carry ids and counts only', async () => {
    llm.enqueue({ kind: 'text', content: 'SECRET-ANSWER-CANARY' });
    const ids = await newRun('SECRET-INPUT-CANARY');

    await execute(ids);

    const history = await temporal.client.workflow.getHandle(agentRunWorkflowId(ids.runId)).fetchHistory();
    // Payloads are encrypted at rest (tests/ops/payload-encryption.test.ts); decrypt them to see
    // what the workflow itself carries.
    const [codec] = testDataConverter.payloadCodecs!;
    const encoded = (history.events ?? []).flatMap((e) => [
      ...(e.workflowExecutionStartedEventAttributes?.input?.payloads ?? []),
      ...(e.activityTaskScheduledEventAttributes?.input?.payloads ?? []),
      ...(e.activityTaskCompletedEventAttributes?.result?.payloads ?? []),
      ...(e.workflowExecutionCompletedEventAttributes?.result?.payloads ?? []),
    ]) as Payload[];
    const decoded = JSON.stringify((await codec!.decode(encoded)).map((p) => Buffer.from(p.data ?? new Uint8Array()).toString('utf8')));
    expect(decoded).toContain(ids.runId);
    expect(decoded).not.toContain('SECRET-INPUT-CANARY');
    expect(decoded).not.toContain('SECRET-ANSWER-CANARY');
  });

  it('retries a 429 no sooner than the Retry-After the provider asked for', async () => {
    llm.enqueue({ kind: 'error', status: 429, retryAfter: '2', message: 'Rate limit reached' }, { kind: 'text', content: 'after the wait' });
    const ids = await newRun('Busy provider');

    const result = await execute(ids);

    expect(result.status).toBe('completed');
    expect(llm.requests).toHaveLength(2);
    const waited = llm.requests[1]!.at - llm.requests[0]!.at;
    expect(waited).toBeGreaterThanOrEqual(2000);
    expect((await runRow(ids.runId)).output).toBe('after the wait');
    // The failed attempt left no event behind: exactly one answer is recorded.
    expect(await eventTypes(ids.runId)).toEqual(['1:run.started', '2:llm.completed', '3:run.completed']);
  });

  it('fails the run at once with a readable error when the provider rejects the request (400)', async () => {
    llm.enqueue({ kind: 'error', status: 400, message: 'The model `test/model-a` does not exist' });
    const ids = await newRun('Bad model');

    const failure = await execute(ids).then(
      () => undefined,
      (err: unknown) => err,
    );

    expect(failure).toBeInstanceOf(WorkflowFailedError);
    const cause = (failure as WorkflowFailedError).cause;
    expect(cause?.message).toContain('does not exist');
    expect(llm.requests).toHaveLength(1);
    const row = await runRow(ids.runId);
    expect(row.status).toBe('failed');
    expect(row.error).toMatchObject({ type: 'LlmRequestRejected' });
    expect(row.error.message).toContain('does not exist');
    // Sequence numbers only grow; the LLM step's number stays unused because it recorded nothing.
    expect(await eventTypes(ids.runId)).toEqual(['1:run.started', '3:run.failed']);
  });
});
