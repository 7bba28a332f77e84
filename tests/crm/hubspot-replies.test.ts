import { sandboxEcho } from '../../scripts/stack/sandbox-llm.js';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../api/app.js';
import type { FakeHubspot } from '../fakes/hubspot-server.js';
import { signUserToken } from '../support/auth.js';
import { createOrgWithMembers } from '../support/db.js';
import { startFullTestApp, type FullTestApp } from '../support/full-app.js';
import { createCrmConnection, intakeSettled } from './support.js';

/** A `conversation.newMessage` event as HubSpot sends it (no text: only the thread and message ids). */
const newMessageEvent = (eventId: number, threadId: number, messageId: string) => ({
  eventId,
  subscriptionType: 'conversation.newMessage',
  objectId: threadId,
  messageId,
  messageType: 'MESSAGE',
});
const echoOf = sandboxEcho;
// The fake's first owner is user 601, whose agent actor is A-1601 (users are owners + 1000).
const AGENT_USER = 'A-1601';

describe("the agent's answer goes into the contact's HubSpot thread, as the dedicated user, once", { timeout: 180_000 }, () => {
  let full: FullTestApp;
  let app: App;
  let admin: pg.Pool;
  let hubspot: FakeHubspot;
  let orgId: string;
  let adminToken: string;
  let memberToken: string;
  const token = `pat-na1-${randomUUID()}`;

  beforeAll(async () => {
    full = await startFullTestApp({ agentWorker: true, hubspotDataset: { deals: 2, contacts: 5 } });
    ({ app, admin, hubspot } = full);
    hubspot.addPrivateAppToken(token);
    const org = await createOrgWithMembers(admin, ['owner', 'admin', 'member']);
    orgId = org.orgId;
    adminToken = await signUserToken(org.userWithRole('admin'));
    memberToken = await signUserToken(org.userWithRole('member'));
  });

  afterAll(async () => {
    await full?.close();
  });

  const as = (bearer: string) => ({ authorization: `Bearer ${bearer}` });
  async function connectionWithAgent(): Promise<string> {
    const connectionId = await createCrmConnection(admin, orgId, { provider: 'hubspot', apiBaseUrl: hubspot.url, authKind: 'token', tokens: { accessToken: token, refreshToken: null, expiresAt: null } });
    const agent = await app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgId}/agents`,
      headers: as(adminToken),
      payload: { name: `Replies ${randomUUID().slice(0, 6)}`, model: 'sandbox/echo', crmConnectionId: connectionId, triggers: [{ event: 'incoming_message' }] },
    });
    expect(agent.statusCode, agent.body).toBe(201);
    return connectionId;
  }
  const deliver = (connectionId: string, events: Array<Record<string, unknown>>, opts: { secret?: string } = {}) => {
    const path = `/v1/webhooks/crm/hubspot/${connectionId}`;
    // Signed by the fake with the app's client secret over API_PUBLIC_URL + path, as HubSpot signs.
    const delivery = hubspot.webhookDelivery(`https://api.example.test${path}`, events, opts);
    return app.inject({ method: 'POST', url: path, headers: delivery.headers, payload: delivery.body });
  };
  const runOf = async (connectionId: string, contactId: number) =>
    (await admin.query<{ id: string }>(`select id from public.agent_runs where org_id = $1 and thread_key = $2`, [orgId, `crm:${connectionId}:${contactId}`])).rows[0];
  const outgoing = (threadId: number) => hubspot.threadMessages(threadId).filter((m) => m.direction === 'OUTGOING');

  it('admins set the sender user; a Kommo-only field on a HubSpot connection is a 400 naming it; members may not', async () => {
    const connectionId = await connectionWithAgent();
    const url = `/v1/orgs/${orgId}/crm/connections/${connectionId}/messaging-settings`;
    const before = await app.inject({ method: 'GET', url, headers: as(adminToken) });
    expect(before.json()).toEqual({ hubspotSenderActorId: null, kommoSalesbot: null, kommoMonthlyQuota: null, quotaWarnPercent: 80 });
    const wrong = await app.inject({ method: 'PUT', url, headers: as(adminToken), payload: { kommoMonthlyQuota: 500 } });
    expect(wrong.statusCode).toBe(400);
    expect(wrong.json().errors).toEqual([expect.objectContaining({ path: 'body.kommoMonthlyQuota' })]);
    const badActor = await app.inject({ method: 'PUT', url, headers: as(adminToken), payload: { hubspotSenderActorId: 'V-1601' } });
    expect(badActor.statusCode).toBe(400);
    expect(JSON.stringify(badActor.json().errors)).toContain('hubspotSenderActorId');
    expect((await app.inject({ method: 'PUT', url, headers: as(memberToken), payload: { hubspotSenderActorId: AGENT_USER } })).statusCode).toBe(403);
    const put = await app.inject({ method: 'PUT', url, headers: as(adminToken), payload: { hubspotSenderActorId: AGENT_USER } });
    expect(put.statusCode, put.body).toBe(200);
    expect((await app.inject({ method: 'GET', url, headers: as(adminToken) })).json()).toMatchObject({ hubspotSenderActorId: AGENT_USER });
  });

  it('a signed conversation.newMessage gets one reply in the same thread, from the dedicated user, on the lead\'s channel', async () => {
    const connectionId = await connectionWithAgent();
    await app.inject({ method: 'PUT', url: `/v1/orgs/${orgId}/crm/connections/${connectionId}/messaging-settings`, headers: as(adminToken), payload: { hubspotSenderActorId: AGENT_USER } });
    const thread = hubspot.addConversationThread({ contactId: 30_002 });
    const messageId = hubspot.addConversationMessage(thread, { direction: 'INCOMING', text: 'Can I pay by invoice?' });

    // A delivery signed with another secret is refused and starts nothing.
    expect((await deliver(connectionId, [newMessageEvent(610_000, thread, messageId)], { secret: 'not-the-app-secret' })).statusCode).toBe(401);
    const res = await deliver(connectionId, [newMessageEvent(610_001, thread, messageId)]);
    expect(res.json()).toEqual({ received: 1, accepted: 1, duplicates: 0 });

    await expect.poll(() => outgoing(thread).map((m) => m.text), { timeout: 60_000, interval: 250 }).toEqual([echoOf('Can I pay by invoice?')]);
    expect(outgoing(thread)[0]).toMatchObject({ senderActorId: AGENT_USER, clientType: 'INTEGRATION' });
    const run = (await runOf(connectionId, 30_002))!;
    await expect
      .poll(async () => (await admin.query(`select part, status, route from public.crm_reply_sends where run_id = $1`, [run.id])).rows, { timeout: 10_000 })
      .toEqual([{ part: 0, status: 'sent', route: 'hubspot_thread' }]);
    // Our own reply comes back as a conversation.newMessage: it is OUTGOING, so it does not loop.
    const ours = outgoing(thread)[0]!.id;
    expect((await deliver(connectionId, [newMessageEvent(610_002, thread, ours)])).statusCode).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(outgoing(thread)).toHaveLength(1);
  });

  it('a salesperson (another agent actor of the portal) writing in the thread hands it to people; our own reply\'s echo does not', async () => {
    const connectionId = await connectionWithAgent();
    await app.inject({ method: 'PUT', url: `/v1/orgs/${orgId}/crm/connections/${connectionId}/messaging-settings`, headers: as(adminToken), payload: { hubspotSenderActorId: AGENT_USER } });
    const thread = hubspot.addConversationThread({ contactId: 30_004 });
    const first = hubspot.addConversationMessage(thread, { direction: 'INCOMING', text: 'Do you ship to Porto?' });
    expect((await deliver(connectionId, [newMessageEvent(630_001, thread, first)])).statusCode).toBe(200);
    await expect.poll(() => outgoing(thread).map((m) => m.text), { timeout: 60_000, interval: 250 }).toEqual([echoOf('Do you ship to Porto?')]);
    const run = (await runOf(connectionId, 30_004))!;
    const runView = async () => (await app.inject({ method: 'GET', url: `/v1/orgs/${orgId}/runs/${run.id}`, headers: as(memberToken) })).json();
    const eventsOf = async () => (await admin.query<{ type: string; payload: Record<string, unknown> }>(`select type, payload from public.run_events where run_id = $1 order by seq`, [run.id])).rows;

    // Our reply's echo is OUTGOING from an agent actor too, but from the dedicated user: no handoff.
    expect((await deliver(connectionId, [newMessageEvent(630_002, thread, outgoing(thread)[0]!.id)])).statusCode).toBe(200);
    await intakeSettled(admin, connectionId);
    expect((await runView()).handoff).toBeNull();

    // A colleague answers from the inbox (the fake's owner 1, actor A-601).
    const salesperson = hubspot.addConversationMessage(thread, { direction: 'OUTGOING', text: 'Hi, Ana from sales here: yes we do!' });
    expect((await deliver(connectionId, [newMessageEvent(630_003, thread, salesperson)])).statusCode).toBe(200);
    await expect.poll(async () => (await runView()).handoff, { timeout: 30_000, interval: 250 }).toEqual({ reason: 'salesperson_replied', since: expect.any(String), until: expect.any(String) });
    await expect
      .poll(async () => (await admin.query(`select payload from public.org_events where org_id = $1 and type = 'handoff.requested' and payload->>'runId' = $2`, [orgId, run.id])).rows, { timeout: 10_000 })
      .toEqual([{ payload: expect.objectContaining({ reason: 'salesperson_replied' }) }]);

    // The lead's next message is recorded and held, not answered.
    const next = hubspot.addConversationMessage(thread, { direction: 'INCOMING', text: 'Great, how long does it take?' });
    expect((await deliver(connectionId, [newMessageEvent(630_004, thread, next)])).statusCode).toBe(200);
    await expect.poll(async () => (await eventsOf()).filter((e) => e.type === 'reply.held'), { timeout: 30_000, interval: 250 }).toEqual([
      expect.objectContaining({ payload: expect.objectContaining({ reason: 'handoff' }) }),
    ]);
    expect(outgoing(thread).map((m) => m.text)).toEqual([echoOf('Do you ship to Porto?'), 'Hi, Ana from sales here: yes we do!']);
  });

  it('without a sender user the reply fails as reply_failed, the run is flagged for people, and a member clears the flag', async () => {
    const connectionId = await connectionWithAgent();
    const thread = hubspot.addConversationThread({ contactId: 30_003 });
    const messageId = hubspot.addConversationMessage(thread, { direction: 'INCOMING', text: 'Hello?' });
    expect((await deliver(connectionId, [newMessageEvent(620_001, thread, messageId)])).statusCode).toBe(200);

    await expect.poll(async () => (await runOf(connectionId, 30_003))?.id, { timeout: 60_000 }).toEqual(expect.any(String));
    const run = (await runOf(connectionId, 30_003))!;
    const runUrl = `/v1/orgs/${orgId}/runs/${run.id}`;
    await expect.poll(async () => (await app.inject({ method: 'GET', url: runUrl, headers: as(memberToken) })).json().attention, { timeout: 60_000, interval: 250 }).toEqual({
      reason: 'reply_failed',
      detail: expect.stringContaining('hubspotSenderActorId'),
      since: expect.any(String),
    });
    const events = (await admin.query<{ type: string; payload: Record<string, unknown> }>(`select type, payload from public.run_events where run_id = $1 order by seq`, [run.id])).rows;
    expect(events.filter((e) => e.type === 'reply_failed')).toEqual([expect.objectContaining({ payload: expect.objectContaining({ provider: 'hubspot' }) })]);
    expect(outgoing(thread)).toEqual([]);
    // People are told through the org's events (webhooks and the live feed).
    await expect
      .poll(async () => (await admin.query(`select type, payload from public.org_events where org_id = $1 and type = 'reply.failed'`, [orgId])).rows, { timeout: 10_000 })
      .toEqual([{ type: 'reply.failed', payload: expect.objectContaining({ runId: run.id, provider: 'hubspot', reason: expect.stringContaining('hubspotSenderActorId') }) }]);
    // The list filter finds it; acknowledging clears it, and the flag is gone from the list.
    const flagged = await app.inject({ method: 'GET', url: `/v1/orgs/${orgId}/runs?needsAttention=true`, headers: as(memberToken) });
    expect(flagged.json().items.map((r: { id: string }) => r.id)).toContain(run.id);
    const ack = await app.inject({ method: 'DELETE', url: `${runUrl}/attention`, headers: as(memberToken) });
    expect(ack.statusCode, ack.body).toBe(200);
    expect(ack.json().attention).toBeNull();
    const after = await app.inject({ method: 'GET', url: `/v1/orgs/${orgId}/runs?needsAttention=true`, headers: as(memberToken) });
    expect(after.json().items.map((r: { id: string }) => r.id)).not.toContain(run.id);
  });
});
