import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../api/app.js';
import { HubspotAdapter } from '../../integrations/crm/hubspot.js';
import { INCOMING_MESSAGE_MAX_CHARS, parseHubspotEvents } from '../../integrations/crm/webhooks.js';
import { startFakeHubspot, type FakeHubspot } from '../fakes/hubspot-server.js';
import { signUserToken } from '../support/auth.js';
import { createOrgWithMembers } from '../support/db.js';
import { startFullTestApp, type FullTestApp } from '../support/full-app.js';
import { createCrmConnection, intakeSettled } from './support.js';

/** A `conversation.newMessage` event as HubSpot sends it (no text: only the thread and message ids). */
const newMessageEvent = (eventId: number, threadId: number, messageId: string, messageType = 'MESSAGE') => ({
  eventId,
  subscriptionType: 'conversation.newMessage',
  objectId: threadId,
  messageId,
  messageType,
  changeFlag: 'NEW_MESSAGE',
});

describe('parseHubspotEvents: conversation.newMessage', () => {
  it('names the thread and message of chat messages and skips comments and status changes', () => {
    const events = parseHubspotEvents([
      { ...newMessageEvent(1, 9_100_000_001, 'abc123'), portalId: 1, occurredAt: 1 },
      newMessageEvent(2, 9_100_000_001, 'def456', 'COMMENT'),
      newMessageEvent(3, 9_100_000_001, 'ghi789', 'THREAD_STATUS_CHANGE'),
      { eventId: 4, subscriptionType: 'conversation.newMessage', objectId: 9_100_000_001, messageType: 'MESSAGE' },
      { eventId: 5, subscriptionType: 'conversation.creation', objectId: 9_100_000_001 },
    ]);
    expect(events).toEqual([
      {
        dedupeKey: 'hubspot:1',
        objectType: 'contacts',
        externalId: '9100000001',
        change: 'upsert',
        kind: 'conversation.newMessage',
        messageRef: { threadId: '9100000001', messageId: 'abc123' },
      },
    ]);
    // The payload's text, if a sender put one there, is never used: only the API's is.
    expect(parseHubspotEvents([{ ...newMessageEvent(6, 9_100_000_002, 'x1'), text: 'forged' }])[0]).not.toHaveProperty('message');
  });
});

describe('HubspotAdapter.getIncomingMessage', () => {
  let fake: FakeHubspot;
  let adapter: HubspotAdapter;

  beforeAll(async () => {
    fake = await startFakeHubspot({ dataset: { deals: 1, contacts: 3 }, rateLimit: null });
    const token = `pat-na1-${randomUUID()}`;
    fake.addPrivateAppToken(token);
    adapter = new HubspotAdapter({ baseUrl: fake.url, accessToken: async () => token, timeoutMs: 5_000 });
  });
  afterAll(() => fake.close());

  it('answers the contact and the trimmed, capped text of an incoming message, and null for everything else', async () => {
    const thread = fake.addConversationThread({ contactId: 30_001 });
    const long = fake.addConversationMessage(thread, { direction: 'INCOMING', text: `  ${'x'.repeat(INCOMING_MESSAGE_MAX_CHARS + 10)}  ` });
    const hello = fake.addConversationMessage(thread, { direction: 'INCOMING', text: '  Hello there \n' });
    const reply = fake.addConversationMessage(thread, { direction: 'OUTGOING', text: 'Hi, how can I help?' });
    const note = fake.addConversationMessage(thread, { type: 'COMMENT', text: 'internal note' });
    const blank = fake.addConversationMessage(thread, { direction: 'INCOMING', text: '   ' });
    const anonymous = fake.addConversationThread({ contactId: null });
    const fromVisitor = fake.addConversationMessage(anonymous, { direction: 'INCOMING', text: 'Who am I?' });
    const spamThread = fake.addConversationThread({ contactId: 30_009, spam: true });
    const fromSpammer = fake.addConversationMessage(spamThread, { direction: 'INCOMING', text: 'Cheap watches' });

    // The reply target repeats the message's channel and names its sender as the recipient.
    expect(await adapter.getIncomingMessage({ threadId: String(thread), messageId: hello })).toEqual({
      contactId: '30001',
      text: 'Hello there',
      replyTarget: { provider: 'hubspot', threadId: String(thread), channelId: '1000', channelAccountId: '240000001', recipient: { actorId: 'V-30001', deliveryIdentifier: null } },
    });
    const capped = await adapter.getIncomingMessage({ threadId: String(thread), messageId: long });
    expect(capped?.text).toHaveLength(INCOMING_MESSAGE_MAX_CHARS);
    for (const messageId of [reply, note, blank, 'no-such-message']) {
      expect(await adapter.getIncomingMessage({ threadId: String(thread), messageId })).toBeNull();
    }
    expect(await adapter.getIncomingMessage({ threadId: String(anonymous), messageId: fromVisitor })).toBeNull();
    expect(await adapter.getIncomingMessage({ threadId: String(spamThread), messageId: fromSpammer })).toBeNull();
    expect(await adapter.getIncomingMessage({ threadId: '1', messageId: hello })).toBeNull();
    // The conversation read also names who wrote an outgoing message (a user of the portal), for handoffs.
    expect(await adapter.getConversationMessage({ threadId: String(thread), messageId: reply })).toEqual({
      direction: 'outgoing',
      contactId: '30001',
      messageId: reply,
      senderActorId: expect.stringMatching(/^A-\d+$/),
    });
    expect(await adapter.getConversationMessage({ threadId: String(thread), messageId: note })).toBeNull();
  });

  it('classifies refusals like the other reads: 429 retryable with the default wait, 401 not', async () => {
    const thread = fake.addConversationThread({ contactId: 30_002 });
    const messageId = fake.addConversationMessage(thread, { direction: 'INCOMING', text: 'Hi' });
    const ref = { threadId: String(thread), messageId };
    fake.setRateLimit({ max: 0, windowMs: 10_000 });
    await expect(adapter.getIncomingMessage(ref)).rejects.toMatchObject({ kind: 'rate-limited', retryable: true, details: { retryAfterMs: 2000 } });
    fake.setRateLimit(null);
    fake.injectFailure({ status: 503, body: { status: 'error', message: 'down' }, pathPattern: /^\/conversations\/v3\/conversations\/threads\/\d+$/ });
    await expect(adapter.getIncomingMessage(ref)).rejects.toMatchObject({ kind: 'unavailable', retryable: true });
    const stranger = new HubspotAdapter({ baseUrl: fake.url, accessToken: async () => 'not-a-token', timeoutMs: 5_000 });
    await expect(stranger.getIncomingMessage(ref)).rejects.toMatchObject({ kind: 'auth', retryable: false });
  });
});

describe('HubSpot incoming chat messages reach the contact conversation of triggered agents', () => {
  let full: FullTestApp;
  let admin: pg.Pool;
  let hubspot: FakeHubspot;
  let app: App;
  let orgId: string;
  let adminToken: string;
  let token: string;

  beforeAll(async () => {
    full = await startFullTestApp({ agentWorker: true, hubspotDataset: { deals: 2, contacts: 5 } });
    ({ app, admin, hubspot } = full);
    const org = await createOrgWithMembers(admin, ['owner', 'admin']);
    orgId = org.orgId;
    adminToken = await signUserToken(org.userWithRole('admin'));
    token = `pat-na1-${randomUUID()}`;
    hubspot.addPrivateAppToken(token);
  });

  afterAll(async () => {
    await full?.close();
  });

  /** Each test gets its own connection, so agents of one test never listen to another's deliveries. */
  const newConnection = () => createCrmConnection(admin, orgId, { provider: 'hubspot', apiBaseUrl: hubspot.url, authKind: 'token', tokens: { accessToken: token, refreshToken: null, expiresAt: null } });

  async function createAgent(connectionId: string, triggers?: unknown[]): Promise<string> {
    const res = await app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgId}/agents`,
      headers: { authorization: `Bearer ${adminToken}` },
      payload: { name: `Agent ${randomUUID().slice(0, 6)}`, model: 'sandbox/echo', crmConnectionId: connectionId, ...(triggers ? { triggers } : {}) },
    });
    expect(res.statusCode, res.body).toBe(201);
    return res.json().id;
  }

  function deliver(connectionId: string, events: Array<Record<string, unknown>>) {
    const path = `/v1/webhooks/crm/hubspot/${connectionId}`;
    const delivery = hubspot.webhookDelivery(`https://api.example.test${path}`, events);
    return () => app.inject({ method: 'POST', url: path, headers: delivery.headers, payload: delivery.body });
  }

  const messagesOf = async (agentId: string) =>
    (
      await admin.query<{ thread_key: string; author: string | null; source: string; content: string }>(
        `select r.thread_key, m.author, m.source, m.content from public.conversation_messages m join public.agent_runs r on r.id = m.run_id where r.agent_id = $1 order by m.created_at`,
        [agentId],
      )
    ).rows;
  const runsOf = async (agentId: string) => (await admin.query(`select id from public.agent_runs where agent_id = $1`, [agentId])).rows;
  const conversationReads = (threadId: number) => hubspot.apiRequests().filter((r) => r.method === 'GET' && r.path.startsWith(`/conversations/v3/conversations/threads/${threadId}`)).map((r) => r.path);
  const openDeliveries = async (connectionId: string) =>
    (await admin.query<{ dedupe_key: string }>(`select dedupe_key from public.crm_webhook_deliveries where connection_id = $1 and processed_at is null order by dedupe_key`, [connectionId])).rows.map((r) => r.dedupe_key);

  it("takes only the events of the connection's own portal: another portal's, signed with the same app secret, are dropped", async () => {
    const connectionId = await newConnection();
    await admin.query(`update public.crm_connections set external_account_id = '62515' where id = $1`, [connectionId]);
    const ours = { eventId: 7_000_001, subscriptionType: 'deal.creation', objectId: 8_800_001, portalId: 62515, occurredAt: 1 };
    const theirs = { eventId: 7_000_002, subscriptionType: 'deal.creation', objectId: 8_800_002, portalId: 99999, occurredAt: 1 };
    const res = await deliver(connectionId, [ours, theirs])();
    expect(res.statusCode, res.body).toBeLessThan(300);
    const { rows } = await admin.query<{ dedupe_key: string; external_id: string }>(
      `select dedupe_key, external_id from public.crm_webhook_deliveries where connection_id = $1 order by dedupe_key`,
      [connectionId],
    );
    expect(rows).toEqual([{ dedupe_key: 'hubspot:7000001', external_id: '8800001' }]);
  });

  it('a signed conversation.newMessage lands once in the contact conversation, read through the API, and a redelivery does nothing', async () => {
    const connectionId = await newConnection();
    const triggered = await createAgent(connectionId, [{ event: 'incoming_message' }]);
    const stageOnly = await createAgent(connectionId, [{ event: 'lead_stage_entered', stageId: 'closedwon' }]);
    const untriggered = await createAgent(connectionId);
    const thread = hubspot.addConversationThread({ contactId: 30_003 });
    const messageId = hubspot.addConversationMessage(thread, { direction: 'INCOMING', text: '  Is the annual plan still discounted?\n' });

    const post = deliver(connectionId, [newMessageEvent(510_001, thread, messageId)]);
    const first = await post();
    expect(first.json()).toEqual({ received: 1, accepted: 1, duplicates: 0 });
    await intakeSettled(admin, connectionId);
    const second = await post();
    expect(second.json()).toEqual({ received: 1, accepted: 0, duplicates: 1 });
    await intakeSettled(admin, connectionId);

    expect(await messagesOf(triggered)).toEqual([
      { thread_key: `crm:${connectionId}:30003`, author: null, source: 'crm_webhook', content: 'Is the annual plan still discounted?' },
    ]);
    expect(await runsOf(stageOnly)).toEqual([]);
    expect(await runsOf(untriggered)).toEqual([]);
    // Text and contact came from the API, once: the redelivery read nothing.
    expect(conversationReads(thread)).toEqual([`/conversations/v3/conversations/threads/${thread}/messages/${messageId}`, `/conversations/v3/conversations/threads/${thread}`]);
    expect(await openDeliveries(connectionId)).toEqual([]);
  });

  it('outgoing messages, comments, blank messages and threads without a contact land nothing, and are not retried', async () => {
    const connectionId = await newConnection();
    const agentId = await createAgent(connectionId, [{ event: 'incoming_message' }]);
    const thread = hubspot.addConversationThread({ contactId: 30_004 });
    const reply = hubspot.addConversationMessage(thread, { direction: 'OUTGOING', text: 'Thanks for reaching out!' });
    const note = hubspot.addConversationMessage(thread, { type: 'COMMENT', text: 'Internal: call them back' });
    const blank = hubspot.addConversationMessage(thread, { direction: 'INCOMING', text: ' \n ' });
    const visitorThread = hubspot.addConversationThread({ contactId: null });
    const fromVisitor = hubspot.addConversationMessage(visitorThread, { direction: 'INCOMING', text: 'Anyone there?' });

    const res = await deliver(connectionId, [
      newMessageEvent(520_001, thread, reply),
      // Skipped by its type in the payload, without an API read.
      newMessageEvent(520_002, thread, note, 'COMMENT'),
      // The payload claims a chat message; the API says it is a comment.
      newMessageEvent(520_003, thread, note),
      newMessageEvent(520_004, thread, blank),
      newMessageEvent(520_005, visitorThread, fromVisitor),
    ])();
    expect(res.json()).toEqual({ received: 4, accepted: 4, duplicates: 0 });
    await intakeSettled(admin, connectionId);
    expect(await messagesOf(agentId)).toEqual([]);
    expect(await runsOf(agentId)).toEqual([]);
    expect(await openDeliveries(connectionId)).toEqual([]);
    // The outgoing message was read (that is how we know its direction); a colleague wrote it, so
    // its thread was read once for the contact whose open conversations it hands off (none here).
    // The comment and the blank message never needed the thread.
    expect(conversationReads(thread)).toContain(`/conversations/v3/conversations/threads/${thread}/messages/${reply}`);
    expect(conversationReads(thread).filter((p) => p === `/conversations/v3/conversations/threads/${thread}`)).toHaveLength(1);
    expect(conversationReads(visitorThread)).toContain(`/conversations/v3/conversations/threads/${visitorThread}`);
  });

  it('without an agent listening for incoming messages, nothing lands and no API read is spent', async () => {
    const connectionId = await newConnection();
    const stageOnly = await createAgent(connectionId, [{ event: 'lead_stage_entered', stageId: 'closedwon' }]);
    const untriggered = await createAgent(connectionId);
    const thread = hubspot.addConversationThread({ contactId: 30_005 });
    const messageId = hubspot.addConversationMessage(thread, { direction: 'INCOMING', text: 'Hello?' });

    const res = await deliver(connectionId, [newMessageEvent(530_001, thread, messageId)])();
    expect(res.json()).toEqual({ received: 1, accepted: 1, duplicates: 0 });
    await intakeSettled(admin, connectionId);
    expect(await runsOf(stageOnly)).toEqual([]);
    expect(await runsOf(untriggered)).toEqual([]);
    expect(conversationReads(thread)).toEqual([]);
  });

  it('a failed API read after the 200 is retried by the intake, and the message lands once; a redelivery adds nothing', async () => {
    const connectionId = await newConnection();
    const agentId = await createAgent(connectionId, [{ event: 'incoming_message' }]);
    const thread = hubspot.addConversationThread({ contactId: 30_002 });
    const messageId = hubspot.addConversationMessage(thread, { direction: 'INCOMING', text: 'Can I get a demo?' });
    hubspot.injectFailure({ status: 502, body: { status: 'error', message: 'Bad gateway' }, pathPattern: new RegExp(`^/conversations/v3/conversations/threads/${thread}/messages/`) });

    const post = deliver(connectionId, [newMessageEvent(540_001, thread, messageId)]);
    const answered = await post();
    expect(answered.statusCode).toBe(200);
    expect(answered.json()).toEqual({ received: 1, accepted: 1, duplicates: 0 });
    await intakeSettled(admin, connectionId);
    expect(conversationReads(thread).filter((p) => p.includes('/messages/'))).toHaveLength(2);
    expect((await post()).json()).toEqual({ received: 1, accepted: 0, duplicates: 1 });
    await intakeSettled(admin, connectionId);
    expect(await messagesOf(agentId)).toEqual([{ thread_key: `crm:${connectionId}:30002`, author: null, source: 'crm_webhook', content: 'Can I get a demo?' }]);
    expect(await runsOf(agentId)).toHaveLength(1);
  });
});
