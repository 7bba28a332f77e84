import type pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import type { FakeLlmRequestBody, FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { startAgentTestStack, type AgentTestStack } from '../support/agent-stack.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { createAgent, createOrgWithMembers } from '../support/db.js';
import { testLogger, type TestTemporal } from '../support/temporal.js';
import { agentRun } from '../../workflows/agent-run/index.js';
import { createRunService } from '../../api/services/runs.js';
import { STAFF_MARKER } from '../../activities/agent-run/transcript.js';

const PROBLEM = 'https://gpt-agent-platform.dev/problems/';
const lastUser = (body: FakeLlmRequestBody) => [...body.messages].reverse().find((m) => m.role === 'user')?.content ?? '';

describe('conversations: update-with-start, queued, rejected and interrupting messages', () => {
  let stack: AgentTestStack;
  let temporal: TestTemporal;
  let llm: FakeLlmServer;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let taskQueue: string;
  let app: App;
  let orgId: string;
  let token: string;

  beforeAll(async () => {
    stack = await startAgentTestStack('api-conversations-test', { poolMax: 6 });
    ({ temporal, llm, pool, admin, taskQueue } = stack);
    app = await buildApp({
      pool,
      temporal: temporal.client,
      logger: testLogger,
      auth: { jwtSecret: TEST_JWT_SECRET },
      agentRunsTaskQueue: taskQueue,
      conversationIdleTimeoutSeconds: 3,
    });
    const org = await createOrgWithMembers(admin, ['member']);
    orgId = org.orgId;
    token = await signUserToken(org.userWithRole('member'));
  });

  afterAll(async () => {
    await app?.close();
    await stack?.close();
  });

  beforeEach(() => {
    llm.reset();
    // Answers name the message they answer; "slow" messages take a while, "stalled" ones longer than any test.
    const delayFor = (content: string) => (content.startsWith('slow') ? 1500 : content.startsWith('stalled') ? 60_000 : 0);
    llm.setReplyFor(
      () => true,
      (body) => ({ kind: 'text', content: `answer to ${lastUser(body)}`, delayMs: delayFor(lastUser(body)) }),
    );
  });

  async function agentWith(busyPolicy: 'queue' | 'reject' | 'interrupt') {
    const agentId = await createAgent(admin, orgId, { model: 'test/model', instructions: 'Be brief.' });
    await admin.query(`update public.agents set busy_policy = $2 where id = $1`, [agentId, busyPolicy]);
    return agentId;
  }

  const send = (agentId: string, threadKey: string, content: string, as = token) =>
    app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgId}/agents/${agentId}/conversations/${threadKey}/messages`,
      headers: { authorization: `Bearer ${as}` },
      payload: { content },
    });

  /** Waits until the fake LLM holds a request answering `content` (other tests' conversations may still call it). */
  async function llmReceived(content: string) {
    const deadline = Date.now() + 20_000;
    while (!llm.requests.some((r) => lastUser(r.body as FakeLlmRequestBody) === content)) {
      if (Date.now() > deadline) throw new Error(`the LLM never saw ${content}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async function eventsOf(runId: string) {
    const { rows } = await admin.query<{ type: string; payload: Record<string, unknown> }>(
      `select type, payload from public.run_events where run_id = $1 order by seq`,
      [runId],
    );
    return rows;
  }

  async function waitForAnswers(runId: string, n: number) {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const answers = (await eventsOf(runId)).filter((e) => e.type === 'llm.completed').map((e) => e.payload.content);
      if (answers.length >= n) return answers;
      if (Date.now() > deadline) throw new Error(`only ${answers.length} answers`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it('starts the conversation with the first message and continues it with the whole history', async () => {
    const agentId = await agentWith('queue');
    const first = await send(agentId, 'lead-42', 'hello');
    expect(first.statusCode).toBe(202);
    const { runId } = first.json();
    expect(first.json()).toMatchObject({ queued: false, interrupted: false, workflowId: `agent-run:${runId}` });
    await waitForAnswers(runId, 1);

    const second = await send(agentId, 'lead-42', 'and now?');
    expect(second.json().runId).toBe(runId);
    expect(await waitForAnswers(runId, 2)).toEqual(['answer to hello', 'answer to and now?']);

    const lastRequest = llm.requests.at(-1)!.body as FakeLlmRequestBody;
    expect(lastRequest.messages.map((m) => `${m.role}:${m.content}`)).toEqual([
      'system:Be brief.',
      'user:hello',
      'assistant:answer to hello',
      'user:and now?',
    ]);
    const other = await send(agentId, 'lead-43', 'separate thread');
    expect(other.json().runId).not.toBe(runId);
    expect(await waitForAnswers(other.json().runId, 1)).toEqual(['answer to separate thread']);
  });

  it('queues a message that arrives while the agent works, and answers both in order', async () => {
    const agentId = await agentWith('queue');
    const { runId } = (await send(agentId, 'queue-thread', 'slow question')).json();
    await llmReceived('slow question');

    const queued = await send(agentId, 'queue-thread', 'follow-up');
    expect(queued.statusCode).toBe(202);
    expect(queued.json()).toMatchObject({ runId, queued: true });

    expect(await waitForAnswers(runId, 2)).toEqual(['answer to slow question', 'answer to follow-up']);
  });

  it('rejects a message while the agent works when its busy policy is reject (409)', async () => {
    const agentId = await agentWith('reject');
    const { runId } = (await send(agentId, 'reject-thread', 'slow question')).json();
    await llmReceived('slow question');

    const rejected = await send(agentId, 'reject-thread', 'impatient');
    expect(rejected.statusCode).toBe(409);
    expect(rejected.json().type).toBe(`${PROBLEM}agent-busy`);

    expect(await waitForAnswers(runId, 1)).toEqual(['answer to slow question']);
    const { rows } = await admin.query(`select content from public.conversation_messages where run_id = $1 order by created_at`, [runId]);
    // The refused message is kept (it was written before the workflow refused it) but never reaches the model.
    expect((await eventsOf(runId)).filter((e) => e.type === 'user.message').map((e) => e.payload.content)).toEqual(['slow question']);
    expect(rows).toHaveLength(2);
  });

  it('refuses a message to a thread whose run answers a single task (409 not-a-conversation)', async () => {
    // A task run that holds a thread key: the API finds it as the thread's open run, and the
    // workflow, which takes no messages, refuses the update.
    const agentId = await agentWith('queue');
    const { rows } = await admin.query<{ id: string; workflow_id: string }>(
      `insert into public.agent_runs (org_id, agent_id, input, thread_key) values ($1, $2, 'stalled task', 'task-thread') returning id, workflow_id`,
      [orgId, agentId],
    );
    const run = rows[0]!;
    const handle = await temporal.client.workflow.start(agentRun, { taskQueue, workflowId: run.workflow_id, args: [{ orgId, agentId, runId: run.id }] });
    try {
      await llmReceived('stalled task');

      const refused = await send(agentId, 'task-thread', 'hello?');

      expect(refused.statusCode).toBe(409);
      expect(refused.json()).toMatchObject({ type: `${PROBLEM}not-a-conversation`, detail: expect.stringMatching(/not a conversation/) });
      expect((await eventsOf(run.id)).filter((e) => e.type === 'user.message')).toEqual([]);
    } finally {
      await handle.cancel();
    }
  });

  it('interrupts the current turn for a newer message when its busy policy is interrupt', async () => {
    const agentId = await agentWith('interrupt');
    const { runId } = (await send(agentId, 'interrupt-thread', 'slow question')).json();
    await llmReceived('slow question');

    const interrupting = await send(agentId, 'interrupt-thread', 'never mind');
    expect(interrupting.json()).toMatchObject({ interrupted: true, queued: false });

    expect(await waitForAnswers(runId, 1)).toEqual(['answer to never mind']);
    expect((await eventsOf(runId)).map((e) => e.type).slice(0, 5)).toEqual(['run.started', 'user.message', 'turn.interrupted', 'user.message', 'llm.completed']);
  });

  it('ends an idle conversation, and the next message under the same key starts a new one', async () => {
    const agentId = await agentWith('queue');
    const { runId } = (await send(agentId, 'idle-thread', 'hi')).json();
    const deadline = Date.now() + 20_000;
    let row;
    for (;;) {
      row = (await admin.query(`select status, output from public.agent_runs where id = $1`, [runId])).rows[0];
      if (row.status === 'completed' || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(row).toEqual({ status: 'completed', output: 'answer to hi' });

    const next = await send(agentId, 'idle-thread', 'back again');
    expect(next.statusCode).toBe(202);
    expect(next.json().runId).not.toBe(runId);
  });

  it("marks the team's messages in a lead's CRM conversation as staff, so the model tells them from the lead", async () => {
    const agentId = await agentWith('queue');
    const runs = createRunService({ pool, temporal: temporal.client, taskQueue });
    const threadKey = `crm:lead-${Date.now()}`;
    // The lead writes through the CRM (the webhook intake posts as the org's worker)...
    await runs.postMessage({ kind: 'worker', orgId }, { orgId, agentId, threadKey, content: 'How much is Pro?', sourceKey: `evt-${threadKey}` });
    await llmReceived('How much is Pro?');
    // ...and a member of the team writes into the same conversation from the console.
    expect((await send(agentId, threadKey, 'They are a VIP, offer the annual discount')).statusCode).toBe(202);
    await llmReceived(`${STAFF_MARKER}They are a VIP, offer the annual discount`);
    const last = llm.requests.map((r) => r.body as FakeLlmRequestBody).find((b) => lastUser(b).endsWith('offer the annual discount'))!;
    const users = last.messages.filter((m) => m.role === 'user').map((m) => m.content);
    expect(users).toEqual(['How much is Pro?', `${STAFF_MARKER}They are a VIP, offer the annual discount`]);
  });

  it("answers 404 for another org's agent and validates the message", async () => {
    const agentId = await agentWith('queue');
    const outsider = await createOrgWithMembers(admin, ['owner']);
    const res = await send(agentId, 't', 'hi', await signUserToken(outsider.userWithRole('owner')));
    expect(res.statusCode).toBe(404);
    expect((await send(agentId, 'has space', 'hi')).statusCode).toBe(400);
    expect((await send(agentId, 't', '')).statusCode).toBe(400);
  });
});
