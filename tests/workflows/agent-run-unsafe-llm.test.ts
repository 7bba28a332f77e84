import type pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FakeLlmReply, FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { startAgentTestStack, type AgentTestStack } from '../support/agent-stack.js';
import { createAgent, createOrgWithMembers, createRun } from '../support/db.js';
import { type TestTemporal } from '../support/temporal.js';
import { agentRunWorkflowId } from '../../workflows/task-queues.js';
import { agentRun } from '../../workflows/agent-run/index.js';

/**
 * The LLM provider is untrusted input (OWASP API10): whatever it answers, a run either gets a
 * validated answer after bounded retries or fails cleanly, and nothing unvalidated is stored.
 */
describe('agentRun against a misbehaving LLM provider', () => {
  let stack: AgentTestStack;
  let temporal: TestTemporal;
  let llm: FakeLlmServer;
  let admin: pg.Pool;
  let taskQueue: string;

  beforeAll(async () => {
    stack = await startAgentTestStack('agent-run-unsafe-llm', { worker: { llmTimeoutMs: 1_000 } });
    ({ temporal, llm, admin, taskQueue } = stack);
  });

  afterAll(async () => {
    await stack?.close();
  });

  beforeEach(() => llm.reset());

  const html = '<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1><script>steal()</script></body></html>';
  const cases: Array<[string, FakeLlmReply]> = [
    ['an HTML page with status 200', { kind: 'raw', status: 200, headers: { 'content-type': 'text/html' }, body: html }],
    ['malformed JSON', { kind: 'raw', status: 200, headers: { 'content-type': 'application/json' }, body: '{"choices": [ {"message": ' }],
    ['JSON of the wrong shape', { kind: 'raw', status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ choices: 'nope', injected: html }) }],
    ['an oversized body', { kind: 'raw', status: 200, headers: { 'content-type': 'application/json' }, body: `{"pad":"${'x'.repeat(3 * 1024 * 1024)}"}` }],
    ['an answer slower than the timeout', { kind: 'text', content: 'too late', delayMs: 3_000 }],
    ['an HTML 502 from a proxy', { kind: 'raw', status: 502, headers: { 'content-type': 'text/html' }, body: html }],
  ];

  it.each(cases)('retries %s and stores only the validated answer', async (_name, bad) => {
    llm.enqueue(bad, { kind: 'text', content: 'A validated answer.' });
    const { orgId } = await createOrgWithMembers(admin, ['owner']);
    const agentId = await createAgent(admin, orgId, { model: 'test/model' });
    const runId = await createRun(admin, orgId, agentId, { input: 'Hello' });

    const result = await temporal.client.workflow.execute(agentRun, {
      taskQueue,
      workflowId: agentRunWorkflowId(runId),
      args: [{ orgId, agentId, runId }],
    });

    expect(result.status).toBe('completed');
    expect(llm.requests).toHaveLength(2);
    const { rows } = await admin.query(`select output from public.agent_runs where id = $1`, [runId]);
    expect(rows[0].output).toBe('A validated answer.');
    const stored = await admin.query(`select payload::text as payload from public.run_events where run_id = $1`, [runId]);
    const everything = stored.rows.map((r: { payload: string }) => r.payload).join('\n');
    expect(everything).not.toContain('<html');
    expect(everything).not.toContain('steal()');
    expect(everything).not.toContain('too late');
    expect(everything).not.toContain('xxxxxxxx');
  });
});
