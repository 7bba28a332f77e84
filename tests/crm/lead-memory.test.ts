import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MEMORY_INSTRUCTIONS } from '../../activities/agent-run/memory.js';
import { MEMORY_PREAMBLE } from '../../activities/agent-run/transcript.js';
import { leadThreadKey } from '../../lib/agent-triggers.js';
import { agentRun, postMessageUpdate } from '../../workflows/agent-run/index.js';
import { agentRunWorkflowId } from '../../workflows/task-queues.js';
import { startAgentTestStack, type AgentTestStack } from '../support/agent-stack.js';
import { createAgent, createOrgWithMembers, createRun } from '../support/db.js';

/**
 * Memory per lead on the real stack: a conversation with a CRM lead ends (idle timeout), an
 * activity has the (fake) model summarize it, the summary is stored for the lead, and the next
 * conversation with that lead, of any of the org's agents, starts with it.
 */
describe('memory per lead', () => {
  let stack: AgentTestStack;
  let admin: pg.Pool;

  beforeAll(async () => {
    stack = await startAgentTestStack('lead-memory-test');
    admin = stack.admin;
  });
  afterAll(async () => {
    await stack?.close();
  });
  beforeEach(() => stack.llm.reset());

  type Request = { messages: Array<{ role: string; content: string }> };
  const isSummary = (body: Request) => body.messages[0]?.content === MEMORY_INSTRUCTIONS;

  async function waitFor<T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function orgWithLead() {
    const { orgId } = await createOrgWithMembers(admin, ['owner']);
    const { rows } = await admin.query<{ id: string }>(`insert into public.crm_connections (org_id, provider, name, auth_kind, status) values ($1, 'kommo', 'Memory', 'token', 'active') returning id`, [orgId]);
    return { orgId, connectionId: rows[0]!.id };
  }

  /** A conversation of `agentId` on `threadKey`: one message from the lead, the agent's answer, then the idle timeout ends it. */
  async function converse(orgId: string, agentId: string, threadKey: string, text: string) {
    const runId = await createRun(admin, orgId, agentId, { input: '' });
    await admin.query(`update public.agent_runs set thread_key = $2 where id = $1`, [runId, threadKey]);
    const handle = await stack.temporal.client.workflow.start(agentRun, {
      taskQueue: stack.taskQueue,
      workflowId: agentRunWorkflowId(runId),
      args: [{ orgId, agentId, runId, conversation: { idleTimeoutSeconds: 1 } }],
    });
    const { rows } = await admin.query(`insert into public.conversation_messages (org_id, run_id, author, content) values ($1, $2, $3, $4) returning id`, [orgId, runId, randomUUID(), text]);
    await handle.executeUpdate(postMessageUpdate, { args: [{ messageId: rows[0].id }] });
    await handle.result();
    return runId;
  }

  it('summarizes an ended lead conversation once and gives it to the next conversation with the lead', async () => {
    const { orgId, connectionId } = await orgWithLead();
    const threadKey = leadThreadKey(connectionId, 'lead-42');
    const first = await createAgent(admin, orgId, { model: 'test/model', instructions: 'You sell seats.' });
    stack.llm.setReplyFor(
      (body) => isSummary(body as Request),
      () => ({ kind: 'text', content: 'Anna from Acme wants 20 seats; promised a quote by Friday.', usage: { inputTokens: 50, outputTokens: 12 } }),
    );
    stack.llm.setReplyFor((body) => !isSummary(body as Request), () => ({ kind: 'text', content: 'Happy to help, Anna: 20 seats it is.' }));

    const firstRun = await converse(orgId, first, threadKey, 'Hi, I am Anna from Acme, we need 20 seats');

    const memory = await waitFor('the memory row', async () => (await admin.query(`select * from public.lead_memories where source_run_id = $1`, [firstRun])).rows[0]);
    expect(memory).toMatchObject({ org_id: orgId, connection_id: connectionId, lead_external_id: 'lead-42', summary: 'Anna from Acme wants 20 seats; promised a quote by Friday.', agent_id: first, input_tokens: 50, output_tokens: 12 });
    const summaries = stack.llm.requests.filter((r) => isSummary(r.body as Request));
    expect(summaries).toHaveLength(1);
    expect((summaries[0]!.body as Request).messages[1]!.content).toBe('Lead: Hi, I am Anna from Acme, we need 20 seats\nAgent: Happy to help, Anna: 20 seats it is.');
    expect((await admin.query(`select status from public.agent_runs where id = $1`, [firstRun])).rows[0].status).toBe('completed');

    // Another agent of the org, the same lead: the model is told what was remembered.
    const second = await createAgent(admin, orgId, { model: 'test/model', instructions: 'You follow up.' });
    stack.llm.requests.length = 0;
    await converse(orgId, second, threadKey, 'Any news on the quote?');
    const answerRequest = stack.llm.requests.find((r) => !isSummary(r.body as Request))!.body as Request;
    expect(answerRequest.messages).toEqual([
      { role: 'system', content: 'You follow up.' },
      { role: 'system', content: `${MEMORY_PREAMBLE}\n- Anna from Acme wants 20 seats; promised a quote by Friday.` },
      { role: 'user', content: 'Any news on the quote?' },
    ]);
    // Its own end adds a second memory: two summaries for the lead now.
    await waitFor('the second memory', async () => (await admin.query(`select 1 from public.lead_memories where thread_key = $1`, [threadKey])).rowCount === 2);
  });

  it('remembers nothing of a conversation that is not a CRM lead thread, nor of another lead', async () => {
    const { orgId, connectionId } = await orgWithLead();
    const agentId = await createAgent(admin, orgId, { model: 'test/model' });
    stack.llm.setReplyFor(() => true, () => ({ kind: 'text', content: 'Noted.' }));
    const appRun = await converse(orgId, agentId, 'support-chat-1', 'Hello from the app');
    const other = await converse(orgId, agentId, leadThreadKey(connectionId, 'lead-a'), 'I am lead A');

    await waitFor('lead A remembered', async () => (await admin.query(`select 1 from public.lead_memories where source_run_id = $1`, [other])).rowCount === 1);
    expect((await admin.query(`select 1 from public.lead_memories where source_run_id = $1`, [appRun])).rowCount).toBe(0);
    stack.llm.requests.length = 0;
    await converse(orgId, agentId, leadThreadKey(connectionId, 'lead-b'), 'I am lead B');
    const answer = stack.llm.requests.find((r) => !isSummary(r.body as Request))!.body as Request;
    expect(answer.messages.some((m) => m.content.startsWith(MEMORY_PREAMBLE))).toBe(false);
  });

  it('a model that cannot summarize costs the memory, never the conversation outcome', async () => {
    const { orgId, connectionId } = await orgWithLead();
    const agentId = await createAgent(admin, orgId, { model: 'test/model' });
    stack.llm.setReplyFor((body) => isSummary(body as Request), () => ({ kind: 'error', status: 400, message: 'context too long' }));
    stack.llm.setReplyFor((body) => !isSummary(body as Request), () => ({ kind: 'text', content: 'Sure.' }));
    const runId = await converse(orgId, agentId, leadThreadKey(connectionId, 'lead-x'), 'Hello');
    expect((await admin.query(`select status, output from public.agent_runs where id = $1`, [runId])).rows[0]).toEqual({ status: 'completed', output: 'Sure.' });
    expect((await admin.query(`select 1 from public.lead_memories where source_run_id = $1`, [runId])).rowCount).toBe(0);
  });
});
