import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CrmError } from '../../integrations/crm/http.js';
import { HubspotAdapter } from '../../integrations/crm/hubspot.js';
import { KommoAdapter } from '../../integrations/crm/kommo.js';
import { splitForChannel } from '../../integrations/crm/messaging/split.js';
import type { ReplyTarget } from '../../integrations/crm/messaging/types.js';
import { startFakeHubspot, type FakeHubspot } from '../fakes/hubspot-server.js';
import { startFakeKommo, type FakeKommo } from '../../scripts/stack/crm-fakes/kommo.js';

describe('splitForChannel', () => {
  it('keeps a short answer whole and cuts a long one at paragraphs, then sentences, then words, never over the limit', () => {
    expect(splitForChannel('  Hello there.  ', 100)).toEqual(['Hello there.']);
    const paragraphs = `${'First paragraph, quite long. '.repeat(10).trim()}\n\n${'Second one follows here. '.repeat(10).trim()}`;
    const parts = splitForChannel(paragraphs, 400);
    expect(parts).toHaveLength(2);
    expect(parts[0]).toMatch(/^First paragraph/);
    expect(parts[1]).toMatch(/^Second one/);
    const sentences = 'One sentence here. '.repeat(30);
    for (const part of splitForChannel(sentences, 100)) {
      expect(part.length).toBeLessThanOrEqual(100);
      expect(part).toMatch(/here\.$/);
    }
    const word = 'x'.repeat(2_500);
    expect(splitForChannel(word, 1_000).map((p) => p.length)).toEqual([1_000, 1_000, 500]);
    // Nothing is lost: the words of the parts are the words of the answer, in order.
    const text = Array.from({ length: 400 }, (_, i) => `word${i}`).join(' ');
    expect(splitForChannel(text, 333).join(' ').split(/\s+/)).toEqual(text.split(' '));
  });
});

describe('HubSpot replies: a message posted into the lead thread as the dedicated user', () => {
  let fake: FakeHubspot;
  let adapter: HubspotAdapter;
  const sender = 'A-1601';

  beforeAll(async () => {
    fake = await startFakeHubspot({ dataset: { deals: 1, contacts: 3 }, rateLimit: null });
    const token = `pat-na1-${randomUUID()}`;
    fake.addPrivateAppToken(token);
    adapter = new HubspotAdapter({ baseUrl: fake.url, accessToken: async () => token, timeoutMs: 5_000 });
  });
  afterAll(() => fake.close());

  const targetOf = (threadId: number, channelId = '1000'): ReplyTarget => ({
    provider: 'hubspot',
    threadId: String(threadId),
    channelId,
    channelAccountId: '240000001',
    recipient: { actorId: 'V-30001', deliveryIdentifier: null },
  });

  it('sends as the configured actor into the thread, reads its own message back, and HubSpot does not deduplicate', async () => {
    const thread = fake.addConversationThread({ contactId: 30_001 });
    fake.addConversationMessage(thread, { direction: 'INCOMING', text: 'Do you ship to Spain?' });
    const messenger = adapter.messenger({ hubspotSenderActorId: sender, kommoSalesbot: null });
    const since = new Date(Date.now() - 1_000);
    expect(await messenger.findSent(targetOf(thread), 'Yes, we ship to Spain.', since, 'hubspot_thread')).toBeNull();

    const sent = await messenger.send(targetOf(thread), 'Yes, we ship to Spain.', 'hubspot_thread');
    expect(sent).toEqual({ externalId: expect.any(String), route: 'hubspot_thread' });
    expect(fake.threadMessages(thread).map((m) => [m.direction, m.text, m.senderActorId, m.clientType])).toEqual([
      ['INCOMING', 'Do you ship to Spain?', null, 'HUBSPOT'],
      ['OUTGOING', 'Yes, we ship to Spain.', sender, 'INTEGRATION'],
    ]);
    const post = fake.apiRequests().find((r) => r.method === 'POST' && r.path === `/conversations/v3/conversations/threads/${thread}/messages`)!;
    expect(JSON.parse(post.body)).toEqual({
      type: 'MESSAGE',
      text: 'Yes, we ship to Spain.',
      senderActorId: sender,
      channelId: '1000',
      channelAccountId: '240000001',
      recipients: [{ actorId: 'V-30001' }],
      attachments: [],
    });
    expect(await messenger.findSent(targetOf(thread), 'Yes, we ship to Spain.', since, 'hubspot_thread')).toEqual(sent);

    // Why the send activity keeps a ledger: the same POST again is a second message.
    await messenger.send(targetOf(thread), 'Yes, we ship to Spain.', 'hubspot_thread');
    expect(fake.threadMessages(thread).filter((m) => m.direction === 'OUTGOING')).toHaveLength(2);
  });

  it('a 4xx is a non-retryable CrmError, a 429 a retryable one with its wait, and no configured user fails before any call', async () => {
    const thread = fake.addConversationThread({ contactId: 30_002 });
    const messenger = adapter.messenger({ hubspotSenderActorId: sender, kommoSalesbot: null });
    const wrongChannel = await messenger.send(targetOf(thread, '1001'), 'Hi', 'hubspot_thread').catch((e: unknown) => e);
    expect(wrongChannel).toBeInstanceOf(CrmError);
    expect(wrongChannel).toMatchObject({ kind: 'validation', retryable: false, details: { status: 400 } });

    fake.injectFailure({ status: 429, body: { status: 'error', category: 'RATE_LIMITS', message: 'You have reached your secondly limit.' }, headers: { 'retry-after': '3' } });
    const limited = await messenger.send(targetOf(thread), 'Hi', 'hubspot_thread').catch((e: unknown) => e);
    expect(limited).toMatchObject({ kind: 'rate-limited', retryable: true, details: { retryAfterMs: 3_000 } });

    const before = fake.apiRequests().length;
    const unconfigured = adapter.messenger({ hubspotSenderActorId: null, kommoSalesbot: null });
    await expect(unconfigured.send(targetOf(thread), 'Hi', 'hubspot_thread')).rejects.toMatchObject({ kind: 'validation' });
    expect(fake.apiRequests()).toHaveLength(before);
    expect(fake.threadMessages(thread)).toEqual([]);
    expect(messenger.maxChars(targetOf(thread))).toBe(5_000);
    expect(messenger.maxChars(targetOf(thread, '1001'))).toBe(2_000);
  });
});

describe('Kommo replies: send_message on the talk within the monthly quota, a Salesbot beyond it', () => {
  let fake: FakeKommo;
  let adapter: KommoAdapter;

  beforeAll(async () => {
    fake = await startFakeKommo({ dataset: { leads: 5 }, rateLimitPerSecond: null, talks: { monthlyQuota: 2 } });
    const token = `kommo-${randomUUID()}`;
    fake.addLongLivedToken(token);
    adapter = new KommoAdapter({ baseUrl: fake.url, accessToken: async () => token, timeoutMs: 5_000 });
  });
  afterAll(() => fake.close());

  const targetOf = (talkId: number, leadId: number, origin: string | null = 'telegram'): ReplyTarget => ({ provider: 'kommo', talkId: String(talkId), leadId: String(leadId), origin });

  it('send_message lands in the talk until the quota is spent (402), and the Salesbot route then sends the reply from the lead field', async () => {
    const talk = fake.talks.addTalk({ leadId: 1_000_001, origin: 'instagram_business' });
    fake.talks.addMessage(talk, { type: 'incoming', text: 'Price?' });
    const replyFieldId = 880_001;
    const botId = fake.talks.addBot({ replyFieldId });
    const messenger = adapter.messenger({ hubspotSenderActorId: null, kommoSalesbot: { botId: String(botId), replyFieldId: String(replyFieldId) } });
    const target = targetOf(talk, 1_000_001, 'instagram_business');
    const since = new Date(Date.now() - 1_000);

    expect(await messenger.send(target, 'It is 120 EUR.', 'kommo_talk')).toEqual({ externalId: expect.any(String), route: 'kommo_talk' });
    await messenger.send(target, 'Shipping is free.', 'kommo_talk');
    expect(fake.talks.sentThisMonth).toBe(2);
    const over = await messenger.send(target, 'Anything else?', 'kommo_talk').catch((e: unknown) => e);
    expect(over).toMatchObject({ kind: 'validation', retryable: false, details: { status: 402 } });
    expect((over as Error).message).toContain('Over chat API limit');

    expect(await messenger.send(target, 'Anything else?', 'kommo_salesbot')).toEqual({ externalId: `salesbot:${botId}:1000001`, route: 'kommo_salesbot' });
    expect(fake.talks.talks.get(talk)!.messages.map((m) => [m.type, m.author, m.text])).toEqual([
      ['incoming', 'external', 'Price?'],
      ['outgoing', 'internal', 'It is 120 EUR.'],
      ['outgoing', 'internal', 'Shipping is free.'],
      ['outgoing', 'bot', 'Anything else?'],
    ]);
    expect(await messenger.findSent(target, 'Shipping is free.', since, 'kommo_talk')).toMatchObject({ route: 'kommo_talk' });
    expect(await messenger.findSent(target, 'Anything else?', since, 'kommo_salesbot')).toMatchObject({ route: 'kommo_salesbot' });
    expect(await messenger.findSent(target, 'Never sent', since, 'kommo_talk')).toBeNull();
    expect(messenger.maxChars(target)).toBe(1_000);
    expect(messenger.maxChars(targetOf(talk, 1_000_001, 'telegram'))).toBe(4_096);
  });

  it('a closed talk (422), a missing add-on scope (403), an unknown talk (404) and no configured Salesbot are non-retryable', async () => {
    const talk = fake.talks.addTalk({ leadId: 1_000_002 });
    const messenger = adapter.messenger({ hubspotSenderActorId: null, kommoSalesbot: null });
    fake.talks.talks.get(talk)!.closed = true;
    await expect(messenger.send(targetOf(talk, 1_000_002), 'Hi', 'kommo_talk')).rejects.toMatchObject({ kind: 'validation', details: { status: 422 } });
    await expect(messenger.send(targetOf(9_999_999, 1_000_002), 'Hi', 'kommo_talk')).rejects.toMatchObject({ kind: 'not-found' });
    fake.talks.addOn = false;
    try {
      await expect(messenger.send(targetOf(talk, 1_000_002), 'Hi', 'kommo_talk')).rejects.toMatchObject({ kind: 'forbidden', retryable: false });
    } finally {
      fake.talks.addOn = true;
    }
    await expect(messenger.send(targetOf(talk, 1_000_002), 'Hi', 'kommo_salesbot')).rejects.toMatchObject({ kind: 'validation' });
    fake.injectFailure({ status: 429, body: { title: 'Too Many Requests', status: 429, retry_after: 2 }, pathPattern: /send_message/ });
    fake.talks.talks.get(talk)!.closed = false;
    await expect(messenger.send(targetOf(talk, 1_000_002), 'Hi', 'kommo_talk')).rejects.toMatchObject({ kind: 'rate-limited', retryable: true, details: { retryAfterMs: 2_000 } });
    expect(fake.talks.talks.get(talk)!.messages).toEqual([]);
  });
});
