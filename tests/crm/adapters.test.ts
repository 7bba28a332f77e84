import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CrmError } from '../../integrations/crm/http.js';
import { HubspotAdapter, hubspotTokenRequest } from '../../integrations/crm/hubspot.js';
import { KommoAdapter, kommoTokenRequest } from '../../integrations/crm/kommo.js';
import type { CrmAdapter, CrmObjectType, CrmRecord } from '../../integrations/crm/types.js';
import { parseHubspotEvents, parseKommoWebhook, verifyHubspotV3 } from '../../integrations/crm/webhooks.js';
import { decryptSecret, encryptSecret, generateKeySpec, parseKeyring } from '../../lib/crypto.js';
import { startFakeHubspot, type FakeHubspot } from '../fakes/hubspot-server.js';
import { startFakeKommo, type FakeKommo } from '../../scripts/stack/crm-fakes/kommo.js';

async function drain(adapter: CrmAdapter, type: CrmObjectType, list: (cursor: string | null) => ReturnType<CrmAdapter['listPage']>): Promise<CrmRecord[]> {
  const out: CrmRecord[] = [];
  let cursor: string | null = null;
  do {
    const page = await list(cursor);
    out.push(...page.records);
    cursor = page.nextCursor;
  } while (cursor !== null);
  void adapter;
  void type;
  return out;
}

describe('lib/crypto', () => {
  const keyring = parseKeyring(`${generateKeySpec('k1')},${generateKeySpec('k2')}`, 'k2');
  const ctx = { orgId: 'org-a', rowId: 'conn-1', column: 'crm_credentials.refresh_token' };

  it('round-trips under the active key with a fresh IV each time', () => {
    const a = encryptSecret(keyring, 'secret-value', ctx);
    const b = encryptSecret(keyring, 'secret-value', ctx);
    expect(a).not.toBe(b);
    expect(a.split('.')[1]).toBe('k2');
    expect(decryptSecret(keyring, a, ctx)).toBe('secret-value');
  });

  it('refuses a ciphertext moved to another org, row or column', () => {
    const sealed = encryptSecret(keyring, 'secret-value', ctx);
    for (const moved of [{ ...ctx, orgId: 'org-b' }, { ...ctx, rowId: 'conn-2' }, { ...ctx, column: 'crm_credentials.access_token' }]) {
      expect(() => decryptSecret(keyring, sealed, moved)).toThrow(/does not decrypt/);
    }
  });

  it('rejects malformed keyrings', () => {
    expect(() => parseKeyring('k1:short')).toThrow(/32 bytes/);
    expect(() => parseKeyring(generateKeySpec('k1'), 'k9')).toThrow(/not in ENCRYPTION_KEYS/);
  });
});

describe('Kommo adapter against the fake', () => {
  let fake: FakeKommo;
  let token: string;
  let adapter: KommoAdapter;
  beforeAll(async () => {
    fake = await startFakeKommo({ dataset: { leads: 620, contacts: 30 }, rateLimitPerSecond: null });
    const issued = await kommoTokenRequest({ baseUrl: fake.url, app: { clientId: fake.clientId, clientSecret: fake.clientSecret, redirectUri: 'http://x/cb' } }, { kind: 'authorization_code', code: fake.authorize() });
    token = issued.accessToken;
    adapter = new KommoAdapter({ baseUrl: fake.url, accessToken: async () => token, timeoutMs: 5_000 });
  });
  afterAll(() => fake.close());

  it('pages through every lead once at the 250 maximum', async () => {
    const leads = await drain(adapter, 'deals', (c) => adapter.listPage('deals', { cursor: c }));
    expect(leads).toHaveLength(620);
    expect(new Set(leads.map((l) => l.externalId)).size).toBe(620);
    expect(fake.apiRequests().filter((r) => r.path === '/api/v4/leads').map((r) => r.query.get('limit'))).toEqual(['250', '250', '250']);
    expect(leads[0]).toMatchObject({ objectType: 'deals', name: 'Lead 1', stageId: expect.any(String), pipelineId: expect.any(String) });
  });

  it('lists only leads changed since a watermark, and deletions from the events feed', async () => {
    const since = new Date();
    fake.updateLead(1_000_005, { name: 'Renamed' });
    fake.deleteLead(1_000_006);
    const changed = await drain(adapter, 'deals', (c) => adapter.listChangedSince('deals', since, { cursor: c }));
    expect(changed.map((r) => [r.externalId, r.name])).toEqual([['1000005', 'Renamed']]);
    const deleted = await adapter.listDeletedSince('deals', since, { cursor: null });
    expect(deleted.externalIds).toEqual(['1000006']);
    expect(await adapter.getRecord('deals', '1000006')).toBeNull();
  });

  it('reads contacts with emails from custom fields', async () => {
    const contact = await adapter.getRecord('contacts', '300001');
    expect(contact).toMatchObject({ email: 'contact1@example.test', name: 'Contact 1' });
  });

  it('writes notes, tasks and stages', async () => {
    const note = await adapter.addNote({ objectType: 'deals', externalId: '1000001' }, 'Called, interested');
    expect(fake.notes).toContainEqual(expect.objectContaining({ id: Number(note.externalId), entityId: 1_000_001, text: 'Called, interested' }));
    await adapter.createTask({ objectType: 'deals', externalId: '1000001' }, { text: 'Follow up', dueAt: new Date(Date.now() + 86_400_000) });
    expect(fake.tasks.at(-1)).toMatchObject({ entityType: 'leads', entityId: 1_000_001, text: 'Follow up' });
    const moved = await adapter.updateStage('1000001', { stageId: '142' });
    expect(moved.stageId).toBe('142');
  });

  it('classifies 429 (retryable, retry_after from the body), 401 and 5xx', async () => {
    fake.injectFailure({ status: 429, body: { title: 'Too Many Requests', retry_after: 3 } });
    await expect(adapter.listPage('users', { cursor: null })).rejects.toMatchObject({ kind: 'rate-limited', retryable: true, details: { retryAfterMs: 3000 } });
    fake.injectFailure({ status: 503, body: '<html>nginx</html>', headers: { 'retry-after': '2' } });
    await expect(adapter.listPage('users', { cursor: null })).rejects.toMatchObject({ kind: 'unavailable', retryable: true });
    const stale = new KommoAdapter({ baseUrl: fake.url, accessToken: async () => 'nope', timeoutMs: 5_000 });
    await expect(stale.whoAmI()).rejects.toMatchObject({ kind: 'auth', retryable: false });
    fake.injectFailure({ status: 200, delayMs: 500, body: {} });
    const impatient = new KommoAdapter({ baseUrl: fake.url, accessToken: async () => token, timeoutMs: 100 });
    await expect(impatient.whoAmI()).rejects.toSatisfy((e: unknown) => e instanceof CrmError && e.kind === 'unavailable');
  });

  it('rotates refresh tokens: the old one is dead after use', async () => {
    const app = { clientId: fake.clientId, clientSecret: fake.clientSecret, redirectUri: 'http://x/cb' };
    const first = await kommoTokenRequest({ baseUrl: fake.url, app }, { kind: 'authorization_code', code: fake.authorize() });
    const second = await kommoTokenRequest({ baseUrl: fake.url, app }, { kind: 'refresh_token', refreshToken: first.refreshToken! });
    expect(second.refreshToken).not.toBe(first.refreshToken);
    await expect(kommoTokenRequest({ baseUrl: fake.url, app }, { kind: 'refresh_token', refreshToken: first.refreshToken! })).rejects.toMatchObject({ kind: 'auth' });
  });

  it('parses form-encoded webhooks, companies under contacts included', () => {
    const body = 'leads%5Bstatus%5D%5B0%5D%5Bid%5D=1000001&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D=142&contacts%5Bupdate%5D%5B0%5D%5Bid%5D=200001&contacts%5Bupdate%5D%5B0%5D%5Btype%5D=company&leads%5Bdelete%5D%5B0%5D%5Bid%5D=1000002&account%5Bid%5D=31000001';
    const parsed = parseKommoWebhook(body);
    expect(parsed.accountId).toBe('31000001');
    expect(parsed.events.map((e) => [e.objectType, e.externalId, e.change])).toEqual([
      ['deals', '1000001', 'upsert'],
      ['deals', '1000002', 'delete'],
      ['companies', '200001', 'upsert'],
    ]);
    expect(parseKommoWebhook(body).events.map((e) => e.dedupeKey)).toEqual(parsed.events.map((e) => e.dedupeKey));
  });
});

describe('HubSpot adapter against the fake', () => {
  let fake: FakeHubspot;
  let adapter: HubspotAdapter;
  let token: string;
  beforeAll(async () => {
    fake = await startFakeHubspot({ dataset: { deals: 430 }, rateLimit: null });
    token = (await hubspotTokenRequest({ baseUrl: fake.url, app: { clientId: fake.clientId, clientSecret: fake.clientSecret, redirectUri: 'http://x/cb' } }, { kind: 'authorization_code', code: fake.authorize() })).accessToken;
    adapter = new HubspotAdapter({ baseUrl: fake.url, accessToken: async () => token, timeoutMs: 5_000 });
  });
  afterAll(() => fake.close());

  it('lists every deal once with opaque cursors at limit 100, and pipelines with stages', async () => {
    const deals = await drain(adapter, 'deals', (c) => adapter.listPage('deals', { cursor: c }));
    expect(new Set(deals.map((d) => d.externalId)).size).toBe(430);
    expect(deals[0]).toMatchObject({ name: 'Deal 1', pipelineId: expect.any(String), stageId: expect.any(String), updatedAt: expect.any(Date) });
    const pipelines = await adapter.listPage('pipelines', { cursor: null });
    expect(pipelines.records.map((p) => p.externalId)).toEqual(['default', '9001']);
  });

  it('searches changes since a watermark and lists archived records as deletions', async () => {
    const since = new Date();
    fake.updateObject('deals', 100_010, { dealname: 'Bigger deal' });
    fake.archiveObject('deals', 100_011);
    const changed = await drain(adapter, 'deals', (c) => adapter.listChangedSince('deals', since, { cursor: c }));
    expect(changed.map((d) => [d.externalId, d.name])).toEqual([['100010', 'Bigger deal']]);
    expect((await adapter.listDeletedSince('deals', since, { cursor: null })).externalIds).toEqual(['100011']);
    expect(await adapter.getRecord('deals', '100011')).toBeNull();
  });

  it('creates notes and tasks with the documented association types, and moves a deal stage', async () => {
    await adapter.addNote({ objectType: 'deals', externalId: '100001' }, 'Left a voicemail');
    await adapter.createTask({ objectType: 'contacts', externalId: '30001' }, { text: 'Send pricing', dueAt: new Date() });
    expect(fake.engagements.map((e) => [e.kind, e.associations[0]?.typeId])).toEqual([['notes', 214], ['tasks', 204]]);
    expect((await adapter.updateStage('100001', { stageId: 'closedwon', pipelineId: 'default' })).stageId).toBe('closedwon');
  });

  it('answers an expired token with a non-retryable auth error and a RATE_LIMIT 429 with a default wait', async () => {
    fake.tokens.expireAllAccessTokens();
    await expect(adapter.whoAmI()).rejects.toMatchObject({ kind: 'auth', retryable: false });
    token = (await hubspotTokenRequest({ baseUrl: fake.url, app: { clientId: fake.clientId, clientSecret: fake.clientSecret, redirectUri: 'http://x/cb' } }, { kind: 'authorization_code', code: fake.authorize() })).accessToken;
    fake.setRateLimit({ max: 1, windowMs: 10_000 });
    await adapter.whoAmI();
    await expect(adapter.whoAmI()).rejects.toMatchObject({ kind: 'rate-limited', details: { retryAfterMs: 2000 } });
    fake.setRateLimit(null);
  });

  it('verifies v3 webhook signatures and rejects tampering and stale timestamps', () => {
    const target = 'https://api.example.test/v1/webhooks/crm/hubspot/abc?x=1';
    const delivery = fake.webhookDelivery(target, [{ subscriptionType: 'deal.propertyChange', objectId: 100001, propertyName: 'dealstage' }]);
    const check = (body: string, headers: Record<string, string>) =>
      verifyHubspotV3({ clientSecret: fake.clientSecret, method: 'POST', uri: target, body, signature: headers['x-hubspot-signature-v3'], timestamp: headers['x-hubspot-request-timestamp'] });
    expect(check(delivery.body, delivery.headers)).toEqual({ ok: true });
    expect(check(delivery.body.replace('100001', '100002'), delivery.headers)).toMatchObject({ ok: false });
    const stale = fake.webhookDelivery(target, [], { timestampMs: Date.now() - 600_000 });
    expect(check(stale.body, stale.headers)).toMatchObject({ ok: false, reason: expect.stringMatching(/older/) });
    expect(parseHubspotEvents(JSON.parse(delivery.body))).toEqual([{ dedupeKey: 'hubspot:1000', objectType: 'deals', externalId: '100001', change: 'upsert', kind: 'deal.propertyChange', stageChange: true }]);
  });
});
