/**
 * GET /v1/orgs/:orgId/conversations and …/conversations/:runId: the threads of an org as a sales
 * team reads them, derived from runs, messages and events under RLS. The rows are written as
 * the workers write them (service role); the API is read as a member.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { withPrincipal, withServiceRole } from '../../lib/db.js';
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
  let otherOrgId: string;
  let baseUrl: string;
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
  /** The fixture's conversations by latest activity, newest first. */
  let byActivity: string[];
  const get = (url: string, bearer = token) => app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${bearer}` } });

  beforeAll(async () => {
    temporal = await connectTestTemporal();
    pool = appPool({ max: 4 });
    admin = adminPool({ max: 2 });
    app = await buildApp({ pool, temporal: temporal.client, logger: testLogger, auth: { jwtSecret: TEST_JWT_SECRET } });
    // On a port too, for the live stream (inject cannot read a response that never ends).
    baseUrl = await app.listen({ host: '127.0.0.1', port: 0 });
    const org = await createOrgWithMembers(admin, ['owner', 'member']);
    orgId = org.orgId;
    memberId = org.userWithRole('member');
    token = await signUserToken(memberId);
    const other = await createOrgWithMembers(admin, ['owner']);
    otherToken = await signUserToken(other.userWithRole('owner'));
    otherOrgId = other.orgId;
    agentA = await createAgent(admin, orgId, { name: 'Closer' });
    agentB = await createAgent(admin, orgId, { name: 'Support' });

    // Started 50, 40, 30, 20 and 10 minutes ago; the latest activity (the list's order) is the
    // staff message 5 s ago, the agent's answer 20 s ago, the handoff 10 min ago, the flag 15 min
    // ago, and the start of the ended one.
    runs.ended = await conversation(agentA, 'old-chat', 50, 'completed');
    runs.flagged = await conversation(agentA, `crm:${connectionId}:7003`, 40);
    await withServiceRole(admin, (tx) =>
      tx.query(`insert into public.run_attention (org_id, run_id, reason, detail, since) values ($1, $2, 'reply_failed', 'Kommo answered 403', now() - interval '15 minutes')`, [
        orgId,
        runs.flagged,
      ]),
    );
    runs.handedOff = await conversation(agentB, `crm:${connectionId}:7002`, 30);
    await admin.query(
      `update public.agent_runs set handoff_key = 'lead:x', handoff_reason = 'lead_asked', handoff_at = now() - interval '10 minutes', handoff_until = now() + interval '1 day' where id = $1`,
      [runs.handedOff],
    );
    runs.chat = await conversation(agentB, 'web-chat-1', 20);
    await message(runs.chat, 'Checking in on the Porto order', 'user', 5);
    runs.lead = await conversation(agentA, `crm:${connectionId}:7001`, 10);
    await message(runs.lead, 'Do you ship to Porto?', 'crm_webhook', 30);
    await answer(runs.lead, 1, 'Yes, in 3 days. '.repeat(30), 20);
    // A task run (no thread key) is not a conversation.
    await createRun(admin, orgId, agentA);
    byActivity = [runs.chat, runs.lead, runs.handedOff, runs.flagged, runs.ended];
  });

  afterAll(async () => {
    await app?.close();
    await pool?.end();
    await admin?.end();
    await temporal?.close();
  });

  it('lists the threads by latest activity, with the lead, the last message (who wrote it), handoff and attention', async () => {
    const res = await get(`/v1/orgs/${orgId}/conversations`);
    expect(res.statusCode, res.body).toBe(200);
    const { items, nextCursor } = res.json();
    expect(nextCursor).toBeNull();
    // Not the order they started in (lead, chat, handedOff, flagged, ended).
    expect(items.map((c: { runId: string }) => c.runId)).toEqual(byActivity);
    const [chat, lead, handedOff, flagged, ended] = items;
    expect(chat.lastActivityAt).toBe(chat.lastMessage.at);
    expect(lead.lastActivityAt).toBe(lead.lastMessage.at);
    expect(handedOff.lastActivityAt).toBe(handedOff.handoff.since);
    expect(flagged.lastActivityAt).toBe(flagged.attention.since);
    expect(ended.lastActivityAt).toBe(ended.createdAt);
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
    expect(await ids('status=open')).toEqual([runs.chat, runs.lead, runs.handedOff, runs.flagged]);
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
    expect(seen).toEqual(byActivity);
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

  // The tests below record new activity, so they run after the ones that read the fixture as built.

  type Page = { items: Array<{ runId: string; lastActivityAt: string; lastMessage: { from: string; at: string } | null }>; nextCursor: string | null };
  const ids = (page: Page) => page.items.map((c) => c.runId);
  const page = async (query: string): Promise<Page> => {
    const res = await get(`/v1/orgs/${orgId}/conversations?${query}`);
    expect(res.statusCode, res.body).toBe(200);
    return res.json();
  };

  it('moves an older conversation to the top when its lead writes, and when the agent answers, as the worker records them', async () => {
    const worker = { kind: 'worker' as const, orgId };
    // The lead writes in the handed-off thread (third): the intake records it as the org's worker,
    // which has no right to update the run row; the trigger moves it all the same.
    await withPrincipal(pool, worker, (tx) =>
      tx.query(`insert into public.conversation_messages (org_id, run_id, author, content, source) values ($1, $2, null, 'Still there? I want 40 units', 'crm_webhook')`, [
        orgId,
        runs.handedOff,
      ]),
    );
    const afterLead = await page('');
    expect(ids(afterLead)).toEqual([runs.handedOff, runs.chat, runs.lead, runs.flagged, runs.ended]);
    expect(afterLead.items[0]!.lastMessage).toMatchObject({ from: 'lead', preview: 'Still there? I want 40 units' });
    expect(afterLead.items[0]!.lastActivityAt).toBe(afterLead.items[0]!.lastMessage?.at);
    expect((await page('status=needs_person')).items.map((c) => c.runId)).toEqual([runs.handedOff, runs.flagged]);

    // The agent answers in the flagged thread; a tool call without text is not activity.
    await withPrincipal(pool, worker, async (tx) => {
      await tx.query(`insert into public.run_events (org_id, run_id, seq, type, payload) values ($1, $2, 1, 'llm.completed', $3)`, [orgId, runs.flagged, { content: '', toolCalls: [{ name: 'x' }] }]);
    });
    expect(ids(await page(''))[0]).toBe(runs.handedOff);
    await withPrincipal(pool, worker, async (tx) => {
      await tx.query(`insert into public.run_events (org_id, run_id, seq, type, payload) values ($1, $2, 2, 'llm.completed', $3)`, [orgId, runs.flagged, { content: 'Sorry, retrying', toolCalls: [] }]);
    });
    expect(ids(await page(''))).toEqual([runs.flagged, runs.handedOff, runs.chat, runs.lead, runs.ended]);
    // A member's message (through their own RLS, no right on the run row either) moves theirs.
    await withPrincipal(pool, { kind: 'user', userId: memberId }, (tx) =>
      tx.query(`insert into public.conversation_messages (org_id, run_id, author, content, source) values ($1, $2, $3, 'Calling you now', 'user')`, [orgId, runs.lead, memberId]),
    );
    expect(ids(await page(''))).toEqual([runs.lead, runs.flagged, runs.handedOff, runs.chat, runs.ended]);
    // Nothing of this reaches another org's member.
    expect((await get(`/v1/orgs/${orgId}/conversations/${runs.lead}`, otherToken)).statusCode).toBe(404);
  });

  it('pages while activity reorders the list: no conversation twice in one walk, the moved ones on top of the next first page', async () => {
    const before = ids(await page(''));
    expect(before).toHaveLength(5);
    const first = await page('limit=2');
    expect(ids(first)).toEqual(before.slice(0, 2));
    // One conversation already served and one not yet served get a lead message.
    const served = before[1]!;
    const notYet = before[3]!;
    await message(notYet, 'Are you open on Sunday?', 'crm_webhook', 0);
    await message(served, 'And the price?', 'crm_webhook', 0);
    const rest: string[] = [];
    let cursor = first.nextCursor;
    while (cursor) {
      const next = await page(`limit=2&cursor=${cursor}`);
      rest.push(...ids(next));
      cursor = next.nextCursor;
    }
    const walk = [...ids(first), ...rest];
    expect(new Set(walk).size).toBe(walk.length);
    // Every conversation without new activity is served exactly once, in order; the one that
    // moved above the cursor is not served below it.
    expect(walk).toEqual(before.filter((id) => id !== notYet));
    // The next first page has both on top, the latest first.
    expect(ids(await page('limit=2'))).toEqual([served, notYet]);
  });

  it('pages through conversations with the same activity time, and times in the same millisecond, each once', async () => {
    const agent = await createAgent(admin, orgId, { name: 'Ties' });
    const times = ['2026-01-01T00:00:00.000100Z', '2026-01-01T00:00:00.000100Z', '2026-01-01T00:00:00.000200Z', '2026-01-01T00:00:00.000300Z'];
    const created: string[] = [];
    for (const [i, at] of times.entries()) {
      const runId = randomUUID();
      await withServiceRole(admin, (tx) =>
        tx.query(`insert into public.agent_runs (id, org_id, agent_id, input, thread_key, status, created_at) values ($1, $2, $3, '', $4, 'running', $5)`, [runId, orgId, agent, `tie-${i}`, at]),
      );
      created.push(runId);
    }
    const walk: string[] = [];
    let cursor: string | null = null;
    do {
      const next = await page(`agentId=${agent}&limit=1${cursor ? `&cursor=${cursor}` : ''}`);
      walk.push(...ids(next));
      cursor = next.nextCursor;
    } while (cursor);
    const [tieA, tieB, mid, latest] = created as [string, string, string, string];
    expect(walk).toEqual([latest, mid, ...[tieA, tieB].sort().reverse()]);
  });

  /** Reads `activity` hints off GET …/conversations/events as they arrive. */
  async function follow(bearer: string) {
    const abort = new AbortController();
    const res = await fetch(`${baseUrl}/v1/orgs/${orgId}/conversations/events`, { headers: { authorization: `Bearer ${bearer}` }, signal: abort.signal });
    const hints: string[] = [];
    if (res.ok && res.body) {
      void (async () => {
        const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) return;
            buffer += value;
            let end: number;
            while ((end = buffer.indexOf('\n\n')) >= 0) {
              const block = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              if (/^event: activity$/m.test(block)) hints.push((JSON.parse(/^data: (.*)$/m.exec(block)![1]!) as { runId: string }).runId);
            }
          }
        } catch {
          // Aborted at the end of the test.
        }
      })();
    } else await res.body?.cancel();
    return { res, hints, close: () => abort.abort() };
  }

  it('pushes a hint naming the conversation when it starts, gets activity, is resumed or has its flag cleared; not to other orgs', async () => {
    const stranger = await follow(otherToken);
    expect(stranger.res.status).toBe(404);
    expect(stranger.res.headers.get('content-type')).toMatch(/application\/problem\+json/);

    const stream = await follow(token);
    try {
      expect(stream.res.status).toBe(200);
      expect(stream.res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      // Give the subscription a moment to be in place before the first write.
      await new Promise((r) => setTimeout(r, 300));
      const seen = (runId: string) => expect.poll(() => stream.hints.includes(runId), { timeout: 10_000, interval: 50 }).toBe(true);

      // Another org's conversation changing says nothing here.
      const otherAgent = await createAgent(admin, otherOrgId, { name: 'Elsewhere' });
      const elsewhere = randomUUID();
      await admin.query(`insert into public.agent_runs (id, org_id, agent_id, input, thread_key) values ($1, $2, $3, '', 'elsewhere')`, [elsewhere, otherOrgId, otherAgent]);

      const started = await conversation(agentA, 'web-chat-live', 0);
      await seen(started);
      await message(runs.chat, 'Any news?', 'crm_webhook', 0);
      await seen(runs.chat);
      await admin.query(`update public.agent_runs set handoff_until = null where id = $1`, [runs.handedOff]);
      await seen(runs.handedOff);
      await admin.query(`delete from public.run_attention where run_id = $1`, [runs.flagged]);
      await seen(runs.flagged);
      expect(stream.hints).not.toContain(elsewhere);
      // A task run's changes are no conversation's.
      const taskRun = await createRun(admin, orgId, agentA);
      await admin.query(`update public.agent_runs set status = 'running' where id = $1`, [taskRun]);
      await message(runs.lead, 'One more thing', 'crm_webhook', 0);
      await seen(runs.lead);
      expect(stream.hints).not.toContain(taskRun);
    } finally {
      stream.close();
    }
  });
});
