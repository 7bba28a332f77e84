/**
 * GET /v1/orgs/:orgId/conversations and …/conversations/:runId: the threads of an org as a sales
 * team reads them, derived from runs, messages and events under RLS. The rows are written as
 * the workers write them (service role); the API is read as a member.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { withServiceRole } from '../../lib/db.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { adminPool, appPool, createAgent, createOrgWithMembers, createRun } from '../support/db.js';
import { connectTestTemporal, testLogger, type TestTemporal } from '../support/temporal.js';

describe('conversations list', () => {
  let temporal: TestTemporal;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let app: App;
  let orgId: string;
  let memberId: string;
  let token: string;
  let otherToken: string;
  let agentA: string;
  let agentB: string;
  const connectionId = randomUUID();
  const runs: Record<'lead' | 'chat' | 'handedOff' | 'flagged' | 'ended', string> = { lead: '', chat: '', handedOff: '', flagged: '', ended: '' };

  /** A conversation run as postMessage creates it, `minutesAgo` old. */
  async function conversation(agentId: string, threadKey: string, minutesAgo: number, status = 'running'): Promise<string> {
    const runId = randomUUID();
    await withServiceRole(admin, (tx) =>
      tx.query(
        `insert into public.agent_runs (id, org_id, agent_id, input, thread_key, status, created_at) values ($1, $2, $3, '', $4, $5, now() - make_interval(mins => $6))`,
        [runId, orgId, agentId, threadKey, status, minutesAgo],
      ),
    );
    return runId;
  }
  const message = (runId: string, content: string, source: 'crm_webhook' | 'user', secondsAgo: number) =>
    withServiceRole(admin, (tx) =>
      tx.query(
        `insert into public.conversation_messages (org_id, run_id, author, content, source, created_at) values ($1, $2, $3, $4, $5, now() - make_interval(secs => $6))`,
        [orgId, runId, source === 'user' ? memberId : null, content, source, secondsAgo],
      ),
    );
  const answer = (runId: string, seq: number, content: string, secondsAgo: number) =>
    withServiceRole(admin, (tx) =>
      tx.query(`insert into public.run_events (org_id, run_id, seq, type, payload, created_at) values ($1, $2, $3, 'llm.completed', $4, now() - make_interval(secs => $5))`, [
        orgId,
        runId,
        seq,
        { content, toolCalls: [] },
        secondsAgo,
      ]),
    );
  const get = (url: string, bearer = token) => app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${bearer}` } });

  beforeAll(async () => {
    temporal = await connectTestTemporal();
    pool = appPool({ max: 4 });
    admin = adminPool({ max: 2 });
    app = await buildApp({ pool, temporal: temporal.client, logger: testLogger, auth: { jwtSecret: TEST_JWT_SECRET } });
    const org = await createOrgWithMembers(admin, ['owner', 'member']);
    orgId = org.orgId;
    memberId = org.userWithRole('member');
    token = await signUserToken(memberId);
    const other = await createOrgWithMembers(admin, ['owner']);
    otherToken = await signUserToken(other.userWithRole('owner'));
    agentA = await createAgent(admin, orgId, { name: 'Closer' });
    agentB = await createAgent(admin, orgId, { name: 'Support' });

    runs.ended = await conversation(agentA, 'old-chat', 50, 'completed');
    runs.flagged = await conversation(agentA, `crm:${connectionId}:7003`, 40);
    await withServiceRole(admin, (tx) =>
      tx.query(`insert into public.run_attention (org_id, run_id, reason, detail) values ($1, $2, 'reply_failed', 'Kommo answered 403')`, [orgId, runs.flagged]),
    );
    runs.handedOff = await conversation(agentB, `crm:${connectionId}:7002`, 30);
    await admin.query(
      `update public.agent_runs set handoff_key = 'lead:x', handoff_reason = 'lead_asked', handoff_at = now(), handoff_until = now() + interval '1 day' where id = $1`,
      [runs.handedOff],
    );
    runs.chat = await conversation(agentB, 'web-chat-1', 20);
    await message(runs.chat, 'Checking in on the Porto order', 'user', 5);
    runs.lead = await conversation(agentA, `crm:${connectionId}:7001`, 10);
    await message(runs.lead, 'Do you ship to Porto?', 'crm_webhook', 30);
    await answer(runs.lead, 1, 'Yes, in 3 days. '.repeat(30), 20);
    // A task run (no thread key) is not a conversation.
    await createRun(admin, orgId, agentA);
  });

  afterAll(async () => {
    await app?.close();
    await pool?.end();
    await admin?.end();
    await temporal?.close();
  });

  it('lists the threads newest first, with the lead, the last message (who wrote it), handoff and attention', async () => {
    const res = await get(`/v1/orgs/${orgId}/conversations`);
    expect(res.statusCode, res.body).toBe(200);
    const { items, nextCursor } = res.json();
    expect(nextCursor).toBeNull();
    expect(items.map((c: { runId: string }) => c.runId)).toEqual([runs.lead, runs.chat, runs.handedOff, runs.flagged, runs.ended]);
    const [lead, chat, handedOff, flagged] = items;
    expect(lead).toMatchObject({ agentId: agentA, threadKey: `crm:${connectionId}:7001`, status: 'running', lead: { connectionId, leadId: '7001' }, handoff: null, attention: null });
    // The agent's answer came after the lead's message; previews stop at 200 characters.
    expect(lead.lastMessage.from).toBe('agent');
    expect(lead.lastMessage.preview).toHaveLength(200);
    expect(chat).toMatchObject({ lead: null, lastMessage: { from: 'staff', preview: 'Checking in on the Porto order' } });
    expect(handedOff.handoff).toMatchObject({ reason: 'lead_asked' });
    expect(handedOff.lastMessage).toBeNull();
    expect(flagged.attention).toMatchObject({ reason: 'reply_failed', detail: 'Kommo answered 403' });

    const one = await get(`/v1/orgs/${orgId}/conversations/${runs.lead}`);
    expect(one.statusCode).toBe(200);
    expect(one.json()).toEqual(lead);
  });

  it('filters by agent and by status: open, ended, handoff, attention and needs_person', async () => {
    const ids = async (query: string) => (await get(`/v1/orgs/${orgId}/conversations?${query}`)).json().items.map((c: { runId: string }) => c.runId);
    expect(await ids(`agentId=${agentB}`)).toEqual([runs.chat, runs.handedOff]);
    expect(await ids('status=open')).toEqual([runs.lead, runs.chat, runs.handedOff, runs.flagged]);
    expect(await ids('status=ended')).toEqual([runs.ended]);
    expect(await ids('status=handoff')).toEqual([runs.handedOff]);
    expect(await ids('status=attention')).toEqual([runs.flagged]);
    expect(await ids('status=needs_person')).toEqual([runs.handedOff, runs.flagged]);
    const bad = await get(`/v1/orgs/${orgId}/conversations?status=asleep`);
    expect(bad.statusCode).toBe(400);
    expect(bad.headers['content-type']).toMatch(/application\/problem\+json/);
  });

  it('pages with a cursor, every thread once', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await get(`/v1/orgs/${orgId}/conversations?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.statusCode, res.body).toBe(200);
      const body: { items: Array<{ runId: string }>; nextCursor: string | null } = res.json();
      expect(body.items.length).toBeLessThanOrEqual(2);
      seen.push(...body.items.map((c) => c.runId));
      cursor = body.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual([runs.lead, runs.chat, runs.handedOff, runs.flagged, runs.ended]);
    expect((await get(`/v1/orgs/${orgId}/conversations?cursor=nonsense`)).statusCode).toBe(400);
  });

  it("answers 404 to another org's member, for the list and for each thread; a task run is no conversation", async () => {
    const list = await get(`/v1/orgs/${orgId}/conversations`, otherToken);
    expect(list.statusCode).toBe(404);
    expect(list.headers['content-type']).toMatch(/application\/problem\+json/);
    expect((await get(`/v1/orgs/${orgId}/conversations/${runs.lead}`, otherToken)).statusCode).toBe(404);
    const taskRun = (await admin.query<{ id: string }>(`select id from public.agent_runs where org_id = $1 and thread_key is null`, [orgId])).rows[0]!.id;
    expect((await get(`/v1/orgs/${orgId}/conversations/${taskRun}`)).statusCode).toBe(404);
    expect((await get(`/v1/orgs/${orgId}/conversations/${randomUUID()}`)).statusCode).toBe(404);
  });
});
