import { kommoChatWebhookBody } from '../../scripts/stack/crm-fakes/kommo-talks.js';
import { sandboxEcho } from '../../scripts/stack/sandbox-llm.js';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../api/app.js';
import { signUserToken } from '../support/auth.js';
import { createOrgWithMembers } from '../support/db.js';
import { startFullTestApp, type FullTestApp } from '../support/full-app.js';
import { connectKommoByToken } from './support.js';

/** Kommo's webhook body for a lead's chat message in a talk (the fake's account id). */
const kommoMessage = (leadId: number, talkId: number, text: string, origin = 'telegram') => kommoChatWebhookBody({ leadId, talkId, text, origin, accountId: 31_000_001 });

const echoOf = sandboxEcho;

describe("the agent's answer goes into the lead's Kommo talk, once", { timeout: 180_000 }, () => {
  let full: FullTestApp;
  let app: App;
  let admin: pg.Pool;
  let orgId: string;
  let adminToken: string;
  let connectionId: string;
  /** Each connection's webhook path (its own secret). */
  const webhookPaths = new Map<string, string>();

  beforeAll(async () => {
    full = await startFullTestApp({ agentWorker: true, kommoDataset: { leads: 10 } });
    ({ app, admin } = full);
    const org = await createOrgWithMembers(admin, ['owner', 'admin']);
    orgId = org.orgId;
    adminToken = await signUserToken(org.userWithRole('admin'));
    connectionId = await connectionWithAgent('Replies');
  });

  afterAll(async () => {
    await full?.close();
  });

  const deliver = async (body: string, connection = connectionId) => {
    const res = await app.inject({
      method: 'POST',
      url: webhookPaths.get(connection)!,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: body,
    });
    expect(res.statusCode, res.body).toBe(200);
  };
  const runOf = async (leadId: number, connection = connectionId) =>
    (await admin.query<{ id: string; status: string }>(`select id, status from public.agent_runs where org_id = $1 and thread_key = $2`, [orgId, `crm:${connection}:${leadId}`]))
      .rows[0];
  /** A connection of its own (its own monthly count) with an agent answering incoming messages. */
  const connectionWithAgent = async (name = `Replies ${randomUUID().slice(0, 6)}`) => {
    const { connectionId: id, webhookPath } = await connectKommoByToken(admin, orgId, full.kommo);
    webhookPaths.set(id, webhookPath);
    const agent = await app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgId}/agents`,
      headers: { authorization: `Bearer ${adminToken}` },
      payload: { name, model: 'sandbox/echo', crmConnectionId: id, triggers: [{ event: 'incoming_message' }] },
    });
    expect(agent.statusCode, agent.body).toBe(201);
    return id;
  };
  const putSettings = async (connection: string, body: Record<string, unknown>) => {
    const res = await app.inject({ method: 'PUT', url: `/v1/orgs/${orgId}/crm/connections/${connection}/messaging-settings`, headers: { authorization: `Bearer ${adminToken}` }, payload: body });
    expect(res.statusCode, res.body).toBe(200);
    return res.json();
  };
  const talkMessages = (talkId: number) => full.kommo.talks.talks.get(talkId)!.messages.filter((m) => m.type === 'outgoing').map((m) => ({ text: m.text, author: m.author }));
  const outgoing = (talkId: number) => full.kommo.talks.talks.get(talkId)!.messages.filter((m) => m.type === 'outgoing').map((m) => m.text);
  // The durable events GET /runs/:id/events streams (its SSE never ends, so the rows are read here).
  const eventsOf = async (runId: string) =>
    (await admin.query<{ type: string; payload: Record<string, unknown> }>(`select type, payload from public.run_events where run_id = $1 order by seq`, [runId])).rows;

  it('a lead message arriving by webhook produces exactly one message with the answer in the talk, recorded as sent', async () => {
    const leadId = 1_000_003;
    const talkId = full.kommo.talks.addTalk({ leadId });
    full.kommo.talks.addMessage(talkId, { type: 'incoming', text: 'Do you deliver on Saturdays?' });
    await deliver(kommoMessage(leadId, talkId, 'Do you deliver on Saturdays?'));

    await expect.poll(() => outgoing(talkId), { timeout: 60_000, interval: 250 }).toEqual([echoOf('Do you deliver on Saturdays?')]);
    const run = (await runOf(leadId))!;
    await expect
      .poll(async () => (await admin.query(`select answer_seq, part, status, route, external_id from public.crm_reply_sends where run_id = $1`, [run.id])).rows, { timeout: 10_000 })
      .toEqual([{ answer_seq: expect.any(Number), part: 0, status: 'sent', route: 'kommo_talk', external_id: expect.any(String) }]);
    // Nothing more arrives: the send is not repeated.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(outgoing(talkId)).toEqual([echoOf('Do you deliver on Saturdays?')]);
    expect((await eventsOf(run.id)).map((e) => e.type)).not.toContain('reply_failed');
  });

  it('a 4xx from Kommo ends as a reply_failed run event and the conversation goes on', async () => {
    const leadId = 1_000_004;
    const talkId = full.kommo.talks.addTalk({ leadId });
    full.kommo.talks.talks.get(talkId)!.closed = true;
    await deliver(kommoMessage(leadId, talkId, 'Still there?'));

    await expect.poll(async () => (await runOf(leadId))?.id, { timeout: 60_000 }).toEqual(expect.any(String));
    const run = (await runOf(leadId))!;
    await expect.poll(async () => (await eventsOf(run.id)).filter((e) => e.type === 'reply_failed'), { timeout: 60_000, interval: 250 }).toEqual([
      expect.objectContaining({ type: 'reply_failed', payload: expect.objectContaining({ provider: 'kommo', status: 422 }) }),
    ]);
    expect(outgoing(talkId)).toEqual([]);
    await expect.poll(async () => (await runOf(leadId))!.status, { timeout: 10_000 }).toBe('sleeping');
    const { rows } = await admin.query(`select status from public.crm_reply_sends where run_id = $1`, [run.id]);
    expect(rows).toEqual([{ status: 'attempted' }]);
  });
  it('counts send_message per connection: one warning at the configured share, then the Salesbot beyond the quota', async () => {
    const connection = await connectionWithAgent();
    const replyFieldId = 880_001;
    const botId = full.kommo.talks.addBot({ replyFieldId });
    // A bad setting is a 400 naming its field.
    const bad = await app.inject({
      method: 'PUT',
      url: `/v1/orgs/${orgId}/crm/connections/${connection}/messaging-settings`,
      headers: { authorization: `Bearer ${adminToken}` },
      payload: { kommoMonthlyQuota: -1 },
    });
    expect(bad.statusCode).toBe(400);
    expect(JSON.stringify(bad.json().errors)).toContain('kommoMonthlyQuota');
    expect(await putSettings(connection, { kommoMonthlyQuota: 2, quotaWarnPercent: 50, kommoSalesbot: { botId: String(botId), replyFieldId: String(replyFieldId) } })).toEqual({
      hubspotSenderActorId: null,
      kommoSalesbot: { botId: String(botId), replyFieldId: String(replyFieldId) },
      kommoMonthlyQuota: 2,
      quotaWarnPercent: 50,
    });
    const leadId = 1_000_006;
    const talkId = full.kommo.talks.addTalk({ leadId });
    const questions = ['First question?', 'Second question?', 'Third question?'];
    for (const [i, q] of questions.entries()) {
      await deliver(kommoMessage(leadId, talkId, q), connection);
      await expect.poll(() => talkMessages(talkId).length, { timeout: 60_000, interval: 250 }).toBe(i + 1);
    }
    // Two through send_message (the quota), the third by the Salesbot from the lead field.
    expect(talkMessages(talkId)).toEqual([
      { text: echoOf(questions[0]!), author: 'internal' },
      { text: echoOf(questions[1]!), author: 'internal' },
      { text: echoOf(questions[2]!), author: 'bot' },
    ]);
    const run = (await runOf(leadId, connection))!;
    await expect
      .poll(async () => (await admin.query(`select route, status from public.crm_reply_sends where run_id = $1 order by answer_seq`, [run.id])).rows, { timeout: 10_000 })
      .toEqual([
        { route: 'kommo_talk', status: 'sent' },
        { route: 'kommo_talk', status: 'sent' },
        { route: 'kommo_salesbot', status: 'sent' },
      ]);
    // Warned once, when the first send reached 50 % of 2.
    const warnings = (await eventsOf(run.id)).filter((e) => e.type === 'reply_quota_warning');
    expect(warnings).toEqual([{ type: 'reply_quota_warning', payload: expect.objectContaining({ connectionId: connection, sent: 1, quota: 2, remaining: 1, fallback: 'salesbot' }) }]);
    const events = await admin.query<{ seq: number }>(`select seq from public.run_events where run_id = $1 order by seq`, [run.id]);
    expect(events.rows.map((e) => e.seq)).toEqual(events.rows.map((_, i) => events.rows[0]!.seq + i));
  });
  it('where Kommo refuses send_message (no add-on: 403) the Salesbot answers; without a Salesbot it is reply_failed and flagged', async () => {
    const connection = await connectionWithAgent();
    const replyFieldId = 880_002;
    const botId = full.kommo.talks.addBot({ replyFieldId });
    await putSettings(connection, { kommoSalesbot: { botId: String(botId), replyFieldId: String(replyFieldId) } });
    full.kommo.talks.addOn = false;
    try {
      const leadId = 1_000_007;
      const talkId = full.kommo.talks.addTalk({ leadId });
      await deliver(kommoMessage(leadId, talkId, 'Any discounts?'), connection);
      await expect.poll(() => talkMessages(talkId), { timeout: 60_000, interval: 250 }).toEqual([{ text: echoOf('Any discounts?'), author: 'bot' }]);
      const run = (await runOf(leadId, connection))!;
      await expect.poll(async () => (await admin.query(`select route, status from public.crm_reply_sends where run_id = $1`, [run.id])).rows, { timeout: 10_000 }).toEqual([
        { route: 'kommo_salesbot', status: 'sent' },
      ]);

      const bare = await connectionWithAgent();
      const otherLead = 1_000_008;
      const otherTalk = full.kommo.talks.addTalk({ leadId: otherLead });
      await deliver(kommoMessage(otherLead, otherTalk, 'Hello?'), bare);
      await expect.poll(async () => (await runOf(otherLead, bare))?.id, { timeout: 60_000 }).toEqual(expect.any(String));
      const failedRun = (await runOf(otherLead, bare))!;
      await expect
        .poll(async () => (await app.inject({ method: 'GET', url: `/v1/orgs/${orgId}/runs/${failedRun.id}`, headers: { authorization: `Bearer ${adminToken}` } })).json().attention, { timeout: 60_000, interval: 250 })
        .toEqual({ reason: 'reply_failed', detail: expect.any(String), since: expect.any(String) });
      expect((await eventsOf(failedRun.id)).filter((e) => e.type === 'reply_failed')).toEqual([expect.objectContaining({ payload: expect.objectContaining({ status: 403 }) })]);
      expect(talkMessages(otherTalk)).toEqual([]);
    } finally {
      full.kommo.talks.addOn = true;
    }
  });

  it('a long answer is split at sentence boundaries to the channel limit (Instagram: 1,000), every part sent once, in order', async () => {
    const leadId = 1_000_009;
    const talkId = full.kommo.talks.addTalk({ leadId, origin: 'instagram' });
    const sentence = 'We ship to every region within five working days and track each parcel.';
    const answer = Array.from({ length: 40 }, () => sentence).join(' ');
    // The model's next answer is scripted: the sandbox echo would cut it short.
    full.llm!.enqueue({ kind: 'text', content: answer });
    await deliver(kommoMessage(leadId, talkId, 'Tell me everything about shipping.', 'instagram'));
    const expectedParts = Math.ceil(answer.length / 1000);
    await expect.poll(() => outgoing(talkId).length, { timeout: 60_000, interval: 250 }).toBeGreaterThanOrEqual(expectedParts);
    const run = (await runOf(leadId))!;
    await expect
      .poll(async () => (await admin.query<{ part: number; status: string }>(`select part, status from public.crm_reply_sends where run_id = $1 order by part`, [run.id])).rows.every((r) => r.status === 'sent'), { timeout: 10_000 })
      .toBe(true);
    const parts = outgoing(talkId);
    expect(parts.length).toBeLessThanOrEqual(expectedParts + 1);
    for (const part of parts) expect(part.length).toBeLessThanOrEqual(1000);
    // Nothing lost or reordered: the parts joined give the answer back, each cut after a sentence.
    expect(parts.join(' ')).toBe(answer);
    for (const part of parts) expect(part.endsWith('.')).toBe(true);
    const { rows } = await admin.query<{ part: number }>(`select part from public.crm_reply_sends where run_id = $1 order by part`, [run.id]);
    expect(rows.map((r) => r.part)).toEqual(parts.map((_, i) => i));
  });

  it("a 429 is retried after Kommo's retry_after, through the connection's rate budget, and sends once", async () => {
    const leadId = 1_000_010;
    const talkId = full.kommo.talks.addTalk({ leadId });
    full.kommo.injectFailure({ status: 429, body: { title: 'Too Many Requests', status: 429, retry_after: 3 }, pathPattern: new RegExp(`^/api/v4/talks/${talkId}/send_message$`), times: 1 });
    const before = full.kommo.apiRequests().length;
    await deliver(kommoMessage(leadId, talkId, 'Can you call me?'));
    await expect.poll(() => outgoing(talkId), { timeout: 60_000, interval: 250 }).toEqual([echoOf('Can you call me?')]);
    const sends = full.kommo.apiRequests().slice(before).filter((r) => r.path === `/api/v4/talks/${talkId}/send_message`);
    expect(sends.map((r) => r.status)).toEqual([429, 202]);
    // The governor blocked the connection's bucket for Kommo's wait, so the retry came after it.
    const { rows } = await admin.query<{ blocked_until: Date | null }>(`select blocked_until from public.crm_rate_buckets where connection_id = $1`, [connectionId]);
    expect(rows[0]?.blocked_until).toBeInstanceOf(Date);
    expect(sends[1]!.at - sends[0]!.at).toBeGreaterThanOrEqual(2_900);
  });
});
