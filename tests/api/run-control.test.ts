import type pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import type { FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { startAgentTestStack, type AgentTestStack } from '../support/agent-stack.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { createAgent, createOrgWithMembers, createRun } from '../support/db.js';
import { testLogger, type TestTemporal } from '../support/temporal.js';
import { runStateQuery } from '../../workflows/agent-run/index.js';
import { agentRunWorkflowId } from '../../workflows/task-queues.js';

const PROBLEM = 'https://gpt-agent-platform.dev/problems/';

interface SseMessage {
  id?: string;
  event: string;
  data: string;
}

/** Reads an SSE response until `until` says stop (or the stream ends); returns every message. */
async function readSse(response: Response, until: (messages: SseMessage[]) => boolean = () => false): Promise<SseMessage[]> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const messages: SseMessage[] = [];
  let buffer = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const message: SseMessage = { event: 'message', data: '' };
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const [field, ...rest] = line.split(': ');
        const value = rest.join(': ');
        if (field === 'id') message.id = value;
        else if (field === 'event') message.event = value;
        else if (field === 'data') message.data += value;
      }
      if (message.data !== '') messages.push(message);
    }
    if (until(messages)) {
      await reader.cancel();
      break;
    }
  }
  return messages;
}

describe('runs API: list, cancel, approvals, usage, knowledge and live events', () => {
  let stack: AgentTestStack;
  let temporal: TestTemporal;
  let llm: FakeLlmServer;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let taskQueue: string;
  let app: App;
  let baseUrl: string;

  let orgA: string;
  let agentA: string;
  let tokenAdmin: string;
  let tokenMember: string;
  let tokenOutsider: string;

  beforeAll(async () => {
    stack = await startAgentTestStack('api-run-control-test', { poolMax: 8 });
    ({ temporal, llm, pool, admin, taskQueue } = stack);
    app = await buildApp({ pool, temporal: temporal.client, logger: testLogger, auth: { jwtSecret: TEST_JWT_SECRET }, agentRunsTaskQueue: taskQueue });
    baseUrl = await app.listen({ host: '127.0.0.1', port: 0 });

    const a = await createOrgWithMembers(admin, ['admin', 'member']);
    orgA = a.orgId;
    agentA = await createAgent(admin, orgA, { model: 'test/model' });
    tokenAdmin = await signUserToken(a.userWithRole('admin'));
    tokenMember = await signUserToken(a.userWithRole('member'));
    const b = await createOrgWithMembers(admin, ['owner']);
    tokenOutsider = await signUserToken(b.userWithRole('owner'));
  });

  afterAll(async () => {
    await app?.close();
    await stack?.close();
  });

  beforeEach(() => llm.reset());

  const inject = (method: 'GET' | 'POST', url: string, token = tokenMember, payload?: unknown) =>
    app.inject({ method, url: `/v1/orgs/${orgA}${url}`, headers: { authorization: `Bearer ${token}` }, ...(payload ? { payload: payload as Record<string, unknown> } : {}) });

  async function startRun(input: string, agentId = agentA) {
    const res = await app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgA}/agents/${agentId}/runs`,
      headers: { authorization: `Bearer ${tokenMember}` },
      payload: { input },
    });
    expect(res.statusCode).toBe(201);
    return res.json().id as string;
  }

  async function waitForStatus(runId: string, status: string) {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const run = (await inject('GET', `/runs/${runId}`)).json();
      if (run.status === status) return run;
      if (Date.now() > deadline) throw new Error(`run ${runId} is ${run.status}, expected ${status}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function toolAgent(config: { allowed: string[]; approval: string[]; timeout?: number }) {
    const agentId = await createAgent(admin, orgA, { model: 'test/model' });
    await admin.query(`update public.agents set allowed_tools = $2, approval_tools = $3, approval_timeout_seconds = $4 where id = $1`, [
      agentId,
      config.allowed,
      config.approval,
      config.timeout ?? 3600,
    ]);
    return agentId;
  }

  async function pendingApproval(runId: string): Promise<string> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const { rows } = await admin.query(`select id from public.run_approvals where run_id = $1 and status = 'pending'`, [runId]);
      if (rows[0]) return rows[0].id;
      if (Date.now() > deadline) throw new Error('no pending approval');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it('lists runs with agent and status filters and cursor paging; another org gets 404', async () => {
    const org = await createOrgWithMembers(admin, ['member']);
    const token = await signUserToken(org.userWithRole('member'));
    const agent1 = await createAgent(admin, org.orgId);
    const agent2 = await createAgent(admin, org.orgId);
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await createRun(admin, org.orgId, agent1));
    const other = await createRun(admin, org.orgId, agent2);
    await admin.query(`update public.agent_runs set status = 'completed' where id = $1`, [ids[0]]);
    const list = (query: string) => app.inject({ method: 'GET', url: `/v1/orgs/${org.orgId}/runs${query}`, headers: { authorization: `Bearer ${token}` } });

    const all = (await list('')).json();
    expect(all.items.map((r: { id: string }) => r.id)).toEqual([other, ids[2], ids[1], ids[0]]);
    expect((await list(`?agentId=${agent1}`)).json().items).toHaveLength(3);
    expect((await list(`?agentId=${agent1}&status=completed`)).json().items.map((r: { id: string }) => r.id)).toEqual([ids[0]]);
    const page1 = (await list('?limit=3')).json();
    expect(page1.items).toHaveLength(3);
    const page2 = (await list(`?limit=3&cursor=${page1.nextCursor}`)).json();
    expect(page2).toEqual({ items: [expect.objectContaining({ id: ids[0] })], nextCursor: null });
    expect((await list('?status=bogus')).statusCode).toBe(400);
    const outsider = await app.inject({ method: 'GET', url: `/v1/orgs/${org.orgId}/runs`, headers: { authorization: `Bearer ${tokenOutsider}` } });
    expect(outsider.statusCode).toBe(404);
  });

  it('cancels a run while its LLM call is in flight: the call is aborted and the run ends cancelled', async () => {
    llm.enqueue({ kind: 'text', content: 'too late', delayMs: 15_000 });
    const runId = await startRun('Think for a long time');
    const deadline = Date.now() + 10_000;
    while (llm.requests.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));

    const res = await inject('POST', `/runs/${runId}/cancel`);

    expect(res.statusCode).toBe(202);
    const run = await waitForStatus(runId, 'cancelled');
    expect(run.output).toBeNull();
    const { rows } = await admin.query(`select type from public.run_events where run_id = $1 order by seq`, [runId]);
    expect(rows.map((r) => r.type)).toEqual(['run.started', 'run.cancelled']);
    const again = await inject('POST', `/runs/${runId}/cancel`);
    expect(again.statusCode).toBe(409);
    expect(again.json().type).toBe(`${PROBLEM}run-ended`);
    expect((await app.inject({ method: 'POST', url: `/v1/orgs/${orgA}/runs/${runId}/cancel`, headers: { authorization: `Bearer ${tokenOutsider}` } })).statusCode).toBe(404);
  });

  it('approves a pending tool call through the API; a second decision answers 409', async () => {
    const agentId = await toolAgent({ allowed: ['schedule_follow_up'], approval: ['schedule_follow_up'] });
    llm.enqueue({ kind: 'tool_calls', calls: [{ name: 'schedule_follow_up', arguments: '{"delay_seconds":1}' }] }, { kind: 'text', content: 'Followed up.' });
    const runId = await startRun('Follow up tomorrow', agentId);
    const approvalId = await pendingApproval(runId);
    expect((await waitForStatus(runId, 'awaiting_approval')).status).toBe('awaiting_approval');

    const outsider = await app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgA}/runs/${runId}/approvals/${approvalId}`,
      headers: { authorization: `Bearer ${tokenOutsider}` },
      payload: { decision: 'approve' },
    });
    expect(outsider.statusCode).toBe(404);
    expect((await inject('POST', `/runs/${runId}/approvals/${approvalId}`, tokenMember, { decision: 'maybe' })).statusCode).toBe(400);

    const approved = await inject('POST', `/runs/${runId}/approvals/${approvalId}`, tokenMember, { decision: 'approve', comment: 'Go ahead' });
    expect(approved.statusCode).toBe(200);
    expect(approved.json()).toEqual({ approvalId, status: 'approved' });

    const again = await inject('POST', `/runs/${runId}/approvals/${approvalId}`, tokenAdmin, { decision: 'reject' });
    expect(again.statusCode).toBe(409);
    expect(again.json().type).toBe(`${PROBLEM}approval-not-pending`);

    const run = await waitForStatus(runId, 'completed');
    expect(run.output).toBe('Followed up.');
  });

  it('resumes a run waiting on a follow-up timer at once; a run not waiting answers 409, another org 404', async () => {
    const agentId = await toolAgent({ allowed: ['schedule_follow_up'], approval: [] });
    llm.enqueue({ kind: 'tool_calls', calls: [{ name: 'schedule_follow_up', arguments: '{"delay_seconds":86400}' }] }, { kind: 'text', content: 'Checked back early.' });
    const runId = await startRun('Follow up tomorrow', agentId);
    await waitForStatus(runId, 'sleeping');

    const outsider = await app.inject({ method: 'POST', url: `/v1/orgs/${orgA}/runs/${runId}/follow-up/resume`, headers: { authorization: `Bearer ${tokenOutsider}` } });
    expect(outsider.statusCode).toBe(404);
    const resumed = await inject('POST', `/runs/${runId}/follow-up/resume`, tokenMember);
    expect(resumed.statusCode).toBe(202);
    expect(resumed.json()).toEqual({ id: runId, resumeRequested: true });

    const run = await waitForStatus(runId, 'completed');
    expect(run.output).toBe('Checked back early.');
    const { rows } = await admin.query(`select payload from public.run_events where run_id = $1 and type = 'follow_up.resumed'`, [runId]);
    expect(rows).toEqual([{ payload: { early: true, status: 'running' } }]);

    const ended = await inject('POST', `/runs/${runId}/follow-up/resume`, tokenMember);
    expect(ended.statusCode).toBe(409);
    expect(ended.json().type).toBe(`${PROBLEM}run-ended`);
  });

  it('accepts a resume from the moment the run decides to sleep, before "sleeping" is written', async () => {
    // Holds this agent's runs inside the UPDATE that writes 'sleeping' (a trigger that waits
    // while the agent is listed), so the test can act in the window between the workflow
    // deciding to sleep and the status reaching the database. A resume there used to get 409.
    const agentId = await toolAgent({ allowed: ['schedule_follow_up'], approval: [] });
    const trigger = `hold_sleeping_${agentId.replaceAll('-', '')}`;
    await admin.query(`create schema if not exists test_hooks`);
    await admin.query(`create table if not exists test_hooks.held_agents (agent_id uuid primary key)`);
    await admin.query(`create or replace function test_hooks.hold_while_listed() returns trigger language plpgsql security definer set search_path = '' as $$
      begin
        while exists (select 1 from test_hooks.held_agents h where h.agent_id = new.agent_id) loop
          perform pg_sleep(0.02);
        end loop;
        return new;
      end $$`);
    await admin.query(`insert into test_hooks.held_agents (agent_id) values ($1)`, [agentId]);
    await admin.query(
      `create trigger ${trigger} before update on public.agent_runs for each row
         when (new.status = 'sleeping' and new.agent_id = '${agentId}') execute function test_hooks.hold_while_listed()`,
    );
    try {
      llm.enqueue({ kind: 'tool_calls', calls: [{ name: 'schedule_follow_up', arguments: '{"delay_seconds":86400}' }] }, { kind: 'text', content: 'Resumed in time.' });
      const runId = await startRun('Follow up tomorrow', agentId);
      const handle = temporal.client.workflow.getHandle(agentRunWorkflowId(runId));
      const deadline = Date.now() + 20_000;
      while ((await handle.query(runStateQuery)).status !== 'sleeping') {
        if (Date.now() > deadline) throw new Error('the run never decided to sleep');
        await new Promise((r) => setTimeout(r, 50));
      }
      // The workflow has decided to sleep; the database does not say so yet.
      expect((await inject('GET', `/runs/${runId}`)).json().status).toBe('running');

      const resumed = await inject('POST', `/runs/${runId}/follow-up/resume`, tokenMember);
      expect(resumed.statusCode).toBe(202);

      await admin.query(`delete from test_hooks.held_agents where agent_id = $1`, [agentId]);
      const run = await waitForStatus(runId, 'completed');
      expect(run.output).toBe('Resumed in time.');
      const { rows } = await admin.query(`select payload from public.run_events where run_id = $1 and type = 'follow_up.resumed'`, [runId]);
      expect(rows).toEqual([{ payload: { early: true, status: 'running' } }]);
    } finally {
      await admin.query(`delete from test_hooks.held_agents where agent_id = $1`, [agentId]);
      await admin.query(`drop trigger if exists ${trigger} on public.agent_runs`);
    }
  });

  it('answers 409 to resuming a follow-up of a run that is not waiting for one', async () => {
    llm.enqueue({ kind: 'text', content: 'still thinking', delayMs: 3_000 });
    const runId = await startRun('Think a while');
    await waitForStatus(runId, 'running');
    const res = await inject('POST', `/runs/${runId}/follow-up/resume`, tokenMember);
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ type: `${PROBLEM}no-follow-up-pending`, detail: expect.stringMatching(/not waiting for a follow-up/) });
    await waitForStatus(runId, 'completed');
  });

  it('answers 409 for a decision on an approval that already expired', async () => {
    const agentId = await toolAgent({ allowed: ['schedule_follow_up'], approval: ['schedule_follow_up'], timeout: 1 });
    llm.enqueue({ kind: 'tool_calls', calls: [{ name: 'schedule_follow_up', arguments: '{"delay_seconds":1}' }] }, { kind: 'text', content: 'No answer.' });
    const runId = await startRun('Follow up', agentId);
    const approvalId = await pendingApproval(runId);
    await waitForStatus(runId, 'completed');

    const late = await inject('POST', `/runs/${runId}/approvals/${approvalId}`, tokenMember, { decision: 'approve' });
    expect(late.statusCode).toBe(409);
    expect(late.json()).toMatchObject({ type: `${PROBLEM}approval-not-pending`, detail: expect.stringMatching(/expired/) });
  });

  it('reports usage per day with totals, and validates the range', async () => {
    llm.enqueue({ kind: 'text', content: 'metered', usage: { inputTokens: 11, outputTokens: 5 } });
    const org = await createOrgWithMembers(admin, ['member']);
    const token = await signUserToken(org.userWithRole('member'));
    const agentId = await createAgent(admin, org.orgId, { model: 'test/model' });
    const started = await app.inject({ method: 'POST', url: `/v1/orgs/${org.orgId}/agents/${agentId}/runs`, headers: { authorization: `Bearer ${token}` }, payload: { input: 'hi' } });
    const deadline = Date.now() + 20_000;
    const today = new Date().toISOString().slice(0, 10);
    const usage = () => app.inject({ method: 'GET', url: `/v1/orgs/${org.orgId}/usage?from=${today}&to=${today}`, headers: { authorization: `Bearer ${token}` } });
    let body;
    for (;;) {
      body = (await usage()).json();
      if (body.totals?.llmCalls === 1 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(started.statusCode).toBe(201);
    expect(body).toEqual({
      from: today,
      to: today,
      // test/model is in no price table: metered at the fallback price (activities/pricing.ts), never 0.
      items: [{ day: today, runs: 1, llmCalls: 1, inputTokens: 11, outputTokens: 5, costUsd: 0.00054 }],
      totals: { runs: 1, llmCalls: 1, inputTokens: 11, outputTokens: 5, costUsd: 0.00054 },
    });
    const bad = await app.inject({ method: 'GET', url: `/v1/orgs/${org.orgId}/usage?from=2026-02-01&to=2026-01-01`, headers: { authorization: `Bearer ${token}` } });
    expect(bad.statusCode).toBe(400);
    const outsider = await app.inject({ method: 'GET', url: `/v1/orgs/${org.orgId}/usage?from=${today}&to=${today}`, headers: { authorization: `Bearer ${tokenOutsider}` } });
    expect(outsider.statusCode).toBe(404);
  });

  it("adds up the shards a day of usage is counted in", async () => {
    const org = await createOrgWithMembers(admin, ['member']);
    const token = await signUserToken(org.userWithRole('member'));
    // Runs of one org count into up to 8 rows a day (usage_daily_shards migration).
    await admin.query(
      `insert into public.usage_daily (org_id, day, shard, runs, llm_calls, input_tokens, output_tokens, cost_usd)
       values ($1, '2026-03-01', 0, 1, 2, 100, 10, 0.25), ($1, '2026-03-01', 5, 2, 3, 50, 5, 0.5), ($1, '2026-03-02', 7, 1, 1, 7, 3, 0.125)`,
      [org.orgId],
    );
    const res = await app.inject({ method: 'GET', url: `/v1/orgs/${org.orgId}/usage?from=2026-03-01&to=2026-03-31`, headers: { authorization: `Bearer ${token}` } });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      from: '2026-03-01',
      to: '2026-03-31',
      items: [
        { day: '2026-03-01', runs: 3, llmCalls: 5, inputTokens: 150, outputTokens: 15, costUsd: 0.75 },
        { day: '2026-03-02', runs: 1, llmCalls: 1, inputTokens: 7, outputTokens: 3, costUsd: 0.125 },
      ],
      totals: { runs: 4, llmCalls: 6, inputTokens: 157, outputTokens: 18, costUsd: 0.875 },
    });
  });

  it('manages knowledge documents: admins write, members read and search, outsiders get 404', async () => {
    const created = await inject('POST', '/knowledge', tokenAdmin, { title: 'Refund policy', body: 'Refunds within 30 days of purchase.' });
    expect(created.statusCode).toBe(201);
    const doc = created.json();
    expect((await inject('POST', '/knowledge', tokenMember, { title: 'x', body: 'y' })).statusCode).toBe(403);
    expect((await inject('POST', '/knowledge', tokenAdmin, { title: 'x', body: 'y', orgId: orgA })).statusCode).toBe(400);
    expect((await inject('GET', `/knowledge/${doc.id}`)).json().title).toBe('Refund policy');
    const search = (await inject('GET', '/knowledge?q=refunds')).json();
    expect(search.items.map((d: { id: string }) => d.id)).toContain(doc.id);
    expect((await inject('GET', '/knowledge?q=nonexistentword')).json().items).toEqual([]);
    const patched = await app.inject({ method: 'PATCH', url: `/v1/orgs/${orgA}/knowledge/${doc.id}`, headers: { authorization: `Bearer ${tokenAdmin}` }, payload: { title: 'Refunds' } });
    expect(patched.json()).toMatchObject({ title: 'Refunds', body: 'Refunds within 30 days of purchase.' });
    expect((await app.inject({ method: 'GET', url: `/v1/orgs/${orgA}/knowledge/${doc.id}`, headers: { authorization: `Bearer ${tokenOutsider}` } })).statusCode).toBe(404);
    expect((await app.inject({ method: 'DELETE', url: `/v1/orgs/${orgA}/knowledge/${doc.id}`, headers: { authorization: `Bearer ${tokenMember}` } })).statusCode).toBe(403);
    expect((await app.inject({ method: 'DELETE', url: `/v1/orgs/${orgA}/knowledge/${doc.id}`, headers: { authorization: `Bearer ${tokenAdmin}` } })).statusCode).toBe(204);
  });

  it('streams token deltas before the step completes, and every durable event exactly once across a reconnect', async () => {
    const words = Array.from({ length: 12 }, (_, i) => `word${i}`).join(' ');
    llm.enqueue({ kind: 'text', content: words, chunkDelayMs: 100 });
    const runId = await startRun('Stream to me');
    const url = `${baseUrl}/v1/orgs/${orgA}/runs/${runId}/events`;
    const headers = { authorization: `Bearer ${tokenMember}` };

    // First connection: stop after the first delta.
    const first = await readSse(await fetch(url, { headers }), (m) => m.some((x) => x.event === 'delta'));
    const firstDelta = first.findIndex((m) => m.event === 'delta');
    expect(firstDelta).toBeGreaterThanOrEqual(0);
    expect(first.slice(0, firstDelta).some((m) => m.event === 'llm.completed')).toBe(false);
    expect(JSON.parse(first[firstDelta]!.data)).toMatchObject({ seq: 2, text: expect.stringContaining('word') });
    const lastId = [...first].reverse().find((m) => m.id !== undefined)?.id;
    expect(lastId).toBe('1');

    // Reconnect with Last-Event-ID: the rest, each durable event once, and the stream ends after the terminal event.
    const second = await readSse(await fetch(url, { headers: { ...headers, 'last-event-id': lastId! } }));
    const durable = second.filter((m) => m.id !== undefined);
    expect(durable.map((m) => `${m.id}:${m.event}`)).toEqual(['2:llm.completed', '3:run.completed']);
    expect(JSON.parse(durable[0]!.data).payload.content).toBe(words);

    // A fresh connection replays the whole log from the start.
    const replay = await readSse(await fetch(url, { headers }));
    expect(replay.filter((m) => m.id !== undefined).map((m) => m.id)).toEqual(['1', '2', '3']);

    const outsider = await fetch(url, { headers: { authorization: `Bearer ${tokenOutsider}` } });
    expect(outsider.status).toBe(404);
  });
});
