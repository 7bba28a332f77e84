import type { Worker } from '@temporalio/worker';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { RateGovernor } from '../../integrations/crm/governor.js';
import { createCrmSyncWorker } from '../../workers/crm-sync-worker.js';
import { createAgentRunHandoff } from '../../workers/run-handoff.js';
import { crmSyncScheduleId } from '../../workflows/crm-sync-ids.js';
import { startFakeHubspot, type FakeHubspot } from '../fakes/hubspot-server.js';
import { startFakeKommo, type FakeKommo } from '../../scripts/stack/crm-fakes/kommo.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';
import { connectTestTemporal, testDataConverter, testLogger, uniqueTaskQueue, type TestTemporal } from '../support/temporal.js';
import { crmSettingsFor, fastBudget, intakeSettled, testCredentialStore, testKeyring } from './support.js';

describe('CRM API: connections, OAuth, schedules, syncs, records, webhooks', () => {
  let temporal: TestTemporal;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let kommo: FakeKommo;
  let hubspot: FakeHubspot;
  let app: App;
  let worker: Worker;
  let running: Promise<void>;
  const taskQueue = uniqueTaskQueue('crm-api-test');
  let orgA: string;
  let orgB: string;
  let ownerB: string;
  let adminA: string;
  let memberA: string;
  let memberB: string;

  beforeAll(async () => {
    temporal = await connectTestTemporal();
    pool = appPool({ max: 8 });
    admin = adminPool();
    kommo = await startFakeKommo({ dataset: { leads: 120 }, rateLimitPerSecond: null });
    hubspot = await startFakeHubspot({ dataset: { deals: 40 }, rateLimit: null });
    const settings = crmSettingsFor({ kommo, hubspot });
    const governor = new RateGovernor(pool, { budgets: { kommo: fastBudget, hubspot: fastBudget } });
    app = await buildApp({ pool, temporal: temporal.client, logger: testLogger, auth: { jwtSecret: TEST_JWT_SECRET }, crm: { keyring: testKeyring, settings, syncTaskQueue: taskQueue, governor } });
    worker = await createCrmSyncWorker({
      connection: temporal.nativeConnection,
      namespace: temporal.namespace,
      pool,
      credentials: testCredentialStore(pool, settings),
      logger: testLogger,
      taskQueue,
      workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
      shutdownGraceTime: '2 seconds',
      dataConverter: testDataConverter,
      // No agent here has triggers, so nothing is ever handed over; the queue is a dead end on purpose.
      handoff: createAgentRunHandoff({ temporal: temporal.client, taskQueue: uniqueTaskQueue('crm-api-no-agents') }),
    });
    running = worker.run();
    const a = await createOrgWithMembers(admin, ['owner', 'admin', 'member']);
    orgA = a.orgId;
    adminA = await signUserToken(a.userWithRole('admin'));
    memberA = await signUserToken(a.userWithRole('member'));
    const b = await createOrgWithMembers(admin, ['owner', 'member']);
    orgB = b.orgId;
    memberB = await signUserToken(b.userWithRole('member'));
    ownerB = await signUserToken(b.userWithRole('owner'));
  });

  afterAll(async () => {
    await app?.close();
    worker?.shutdown();
    await running;
    await kommo?.close();
    await hubspot?.close();
    await temporal?.close();
    await pool?.end();
    await admin?.end();
  });

  const call = (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, token: string, payload?: unknown) =>
    app.inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}) });

  let kommoConnection: string;
  let kommoWebhookUrl: string;
  let hubspotConnection: string;

  it('connects Kommo through OAuth: authorize URL with state, callback exchanges the code, secrets never answered', async () => {
    const created = await call('POST', `/v1/orgs/${orgA}/crm/connections`, adminA, { provider: 'kommo', name: 'Kommo', auth: { kind: 'oauth' } });
    expect(created.statusCode).toBe(201);
    const body = created.json();
    expect(body.connection).toMatchObject({ provider: 'kommo', status: 'pending', authKind: 'oauth' });
    kommoConnection = body.connection.id;
    kommoWebhookUrl = body.webhookUrl;
    const authorize = new URL(body.authorizeUrl);
    const state = authorize.searchParams.get('state')!;
    expect(state.length).toBeGreaterThan(20);
    // The consent screen redirects back with code, referer (the account host) and our state.
    // The flow is bound to the admin's browser: a short-lived HttpOnly, SameSite=Lax cookie.
    const setCookie = String(created.headers['set-cookie']);
    expect(setCookie).toMatch(/^gap_oauth_binding=[A-Za-z0-9_-]{43}; Path=\/v1; Max-Age=900; HttpOnly; SameSite=Lax/);
    const cookie = setCookie.split(';')[0]!;
    const consent = await fetch(`${authorize.toString()}&redirect_uri=${encodeURIComponent('http://cb.test/callback')}`, { redirect: 'manual' });
    const back = new URL(consent.headers.get('location')!);
    const callback = await app.inject({ method: 'GET', url: `/v1/crm/oauth/callback/kommo${back.search}`, headers: { cookie } });
    expect(callback.statusCode).toBe(200);
    expect(callback.json()).toEqual({ connectionId: kommoConnection, status: 'active' });
    // The state is single use.
    const replay = await app.inject({ method: 'GET', url: `/v1/crm/oauth/callback/kommo${back.search}`, headers: { cookie } });
    expect(replay.statusCode).toBe(400);

    const { rows } = await admin.query<{ access_token: string; refresh_token: string }>(`select access_token, refresh_token from public.crm_credentials where connection_id = $1`, [kommoConnection]);
    expect(rows[0]?.access_token).toMatch(/^v1\.test1\./);
    expect(rows[0]?.refresh_token).toMatch(/^v1\.test1\./);
    const got = await call('GET', `/v1/orgs/${orgA}/crm/connections/${kommoConnection}`, memberA);
    expect(got.statusCode).toBe(200);
    expect(got.body).not.toMatch(/at-[0-9a-f]{8}|rt-[0-9a-f]{8}|v1\.test1/);
  });

  it("completes an OAuth flow only in the browser that started it: a victim lured to an admin's authorize link links nothing", async () => {
    // An admin of org A starts connecting and sends the authorize link to someone else.
    const created = await call('POST', `/v1/orgs/${orgA}/crm/connections`, adminA, { provider: 'kommo', name: 'Phish', auth: { kind: 'oauth' } });
    const connectionId = created.json().connection.id;
    const adminCookie = String(created.headers['set-cookie']).split(';')[0]!;
    const authorize = new URL(created.json().authorizeUrl);
    const consent = await fetch(`${authorize.toString()}&redirect_uri=${encodeURIComponent('http://cb.test/callback')}`, { redirect: 'manual' });
    const back = new URL(consent.headers.get('location')!);
    const tokenRequests = () => kommo.requests.filter((r) => r.path === '/oauth2/access_token').length;
    const before = tokenRequests();

    // The victim, signed in elsewhere with a binding of their own (they started a flow too), or none at all.
    const victim = await call('POST', `/v1/orgs/${orgB}/crm/connections`, ownerB, { provider: 'kommo', name: 'Own', auth: { kind: 'oauth' } });
    const victimCookie = String(victim.headers['set-cookie']).split(';')[0]!;
    expect(victimCookie).not.toBe(adminCookie);
    const asVictim = await app.inject({ method: 'GET', url: `/v1/crm/oauth/callback/kommo${back.search}`, headers: { cookie: victimCookie } });
    expect(asVictim.statusCode).toBe(400);
    expect(asVictim.json().detail).toMatch(/another browser session/);
    expect(tokenRequests()).toBe(before);
    const { rows } = await admin.query(`select status from public.crm_connections where id = $1`, [connectionId]);
    expect(rows).toEqual([{ status: 'pending' }]);
    // The state was spent by that attempt: not even the admin's own browser can finish it now.
    expect((await app.inject({ method: 'GET', url: `/v1/crm/oauth/callback/kommo${back.search}`, headers: { cookie: adminCookie } })).statusCode).toBe(400);

    // Without any cookie, a fresh flow fails the same way.
    const again = await call('POST', `/v1/orgs/${orgA}/crm/connections`, adminA, { provider: 'kommo', name: 'Phish 2', auth: { kind: 'oauth' } });
    const consent2 = await fetch(`${new URL(again.json().authorizeUrl).toString()}&redirect_uri=${encodeURIComponent('http://cb.test/callback')}`, { redirect: 'manual' });
    const back2 = new URL(consent2.headers.get('location')!);
    expect((await app.inject({ method: 'GET', url: `/v1/crm/oauth/callback/kommo${back2.search}` })).statusCode).toBe(400);
    expect(tokenRequests()).toBe(before);
  });

  it('admins write connections: a member gets 403, a non-member 404, members can read', async () => {
    expect((await call('POST', `/v1/orgs/${orgA}/crm/connections`, memberA, { provider: 'hubspot', name: 'x', auth: { kind: 'oauth' } })).statusCode).toBe(403);
    expect((await call('POST', `/v1/orgs/${orgA}/crm/connections`, memberB, { provider: 'hubspot', name: 'x', auth: { kind: 'oauth' } })).statusCode).toBe(404);
    expect((await call('GET', `/v1/orgs/${orgA}/crm/connections/${kommoConnection}`, memberB)).statusCode).toBe(404);
    expect((await call('DELETE', `/v1/orgs/${orgA}/crm/connections/${kommoConnection}`, memberA)).statusCode).toBe(403);
    expect((await call('POST', `/v1/orgs/${orgA}/crm/connections`, adminA, { provider: 'hubspot', name: 'x', auth: { kind: 'oauth' }, extra: 1 })).statusCode).toBe(400);
    const listed = await call('GET', `/v1/orgs/${orgA}/crm/connections`, memberA);
    expect(listed.json().items.map((c: { id: string }) => c.id)).toContain(kommoConnection);
  });

  it('connects HubSpot with a private-app token and tests it', async () => {
    hubspot.addPrivateAppToken('pat-na1-0123456789abcdef');
    const created = await call('POST', `/v1/orgs/${orgA}/crm/connections`, adminA, { provider: 'hubspot', name: 'HubSpot', auth: { kind: 'token', token: 'pat-na1-0123456789abcdef' } });
    expect(created.statusCode).toBe(201);
    expect(created.body).not.toContain('pat-na1');
    hubspotConnection = created.json().connection.id;
    const tested = await call('POST', `/v1/orgs/${orgA}/crm/connections/${hubspotConnection}/test`, adminA);
    expect(tested.json()).toEqual({ ok: true, accountId: String(hubspot.portalId), error: null });
  });

  it('schedules syncs as one Temporal Schedule per connection with overlap SKIP', async () => {
    const put = await call('PUT', `/v1/orgs/${orgA}/crm/connections/${kommoConnection}/schedule`, adminA, { cron: '*/15 * * * *', timeZone: 'Europe/Berlin', paused: true });
    expect(put.statusCode).toBe(200);
    const described = await temporal.client.schedule.getHandle(crmSyncScheduleId(kommoConnection)).describe();
    expect(described.state.paused).toBe(true);
    expect(described.policies.overlap).toBe('SKIP');
    expect(described.spec.timezone).toBe('Europe/Berlin');
    expect(described.action).toMatchObject({ type: 'startWorkflow', workflowType: 'crmSync', taskQueue });
    const again = await call('PUT', `/v1/orgs/${orgA}/crm/connections/${kommoConnection}/schedule`, adminA, { intervalSeconds: 3600, paused: false });
    expect(again.json().schedule).toMatchObject({ intervalSeconds: 3600, paused: false });
    expect((await temporal.client.schedule.getHandle(crmSyncScheduleId(kommoConnection)).describe()).state.paused).toBe(false);
    expect((await call('PUT', `/v1/orgs/${orgA}/crm/connections/${kommoConnection}/schedule`, adminA, { cron: '* * * * *', timeZone: 'Mars/Olympus' })).statusCode).toBe(400);
  });

  it('triggers a sync, shows its history, and serves the records to members of org A only', async () => {
    const started = await call('POST', `/v1/orgs/${orgA}/crm/connections/${kommoConnection}/syncs`, adminA, { mode: 'full' });
    expect(started.statusCode).toBe(202);
    await temporal.client.workflow.getHandle(started.json().workflowId).result();
    const history = await call('GET', `/v1/orgs/${orgA}/crm/connections/${kommoConnection}/syncs`, memberA);
    expect(history.json().items[0]).toMatchObject({ mode: 'full', status: 'completed', counts: { added: 120 + 20 + 10 + 3 + 2, deleted: 0 } });

    const page1 = await call('GET', `/v1/orgs/${orgA}/crm/records?type=deals&limit=100`, memberA);
    expect(page1.json().items).toHaveLength(100);
    const page2 = await call('GET', `/v1/orgs/${orgA}/crm/records?type=deals&limit=100&cursor=${page1.json().nextCursor}`, memberA);
    expect(page2.json()).toMatchObject({ nextCursor: null });
    expect(page2.json().items).toHaveLength(20);
    const search = await call('GET', `/v1/orgs/${orgA}/crm/records?type=deals&q=${encodeURIComponent('Lead 11')}`, memberA);
    expect(search.json().items.map((r: { name: string }) => r.name).sort()).toEqual(['Lead 11', 'Lead 110', 'Lead 111', 'Lead 112', 'Lead 113', 'Lead 114', 'Lead 115', 'Lead 116', 'Lead 117', 'Lead 118', 'Lead 119']);
    expect((await call('GET', `/v1/orgs/${orgA}/crm/records?type=deals`, memberB)).statusCode).toBe(404);
    expect((await call('GET', `/v1/orgs/${orgB}/crm/records?type=deals`, memberB)).json().items).toEqual([]);
  });

  it('Kommo webhooks: the URL secret is checked, and a redelivery has one effect', async () => {
    const url = new URL(kommoWebhookUrl);
    kommo.updateLead(1_000_001, { name: 'Changed in Kommo' });
    const body = 'leads%5Bupdate%5D%5B0%5D%5Bid%5D=1000001&account%5Bid%5D=31000001';
    const post = (secret: string) =>
      app.inject({ method: 'POST', url: `${url.pathname}?secret=${secret}`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: body });
    expect((await post('wrong')).statusCode).toBe(401);
    const first = await post(url.searchParams.get('secret')!);
    expect(first.json()).toEqual({ received: 1, accepted: 1, duplicates: 0 });
    await intakeSettled(admin, kommoConnection);
    const reads = kommo.apiRequests().filter((r) => r.path === '/api/v4/leads/1000001').length;
    const second = await post(url.searchParams.get('secret')!);
    expect(second.json()).toEqual({ received: 1, accepted: 0, duplicates: 1 });
    await intakeSettled(admin, kommoConnection);
    expect(kommo.apiRequests().filter((r) => r.path === '/api/v4/leads/1000001')).toHaveLength(reads);
    const { rows } = await admin.query(`select name from public.crm_records where connection_id = $1 and object_type = 'deals' and external_id = '1000001'`, [kommoConnection]);
    expect(rows).toEqual([{ name: 'Changed in Kommo' }]);
  });

  it('HubSpot webhooks: a bad v3 signature is rejected, a valid one upserts the record once', async () => {
    const path = `/v1/webhooks/crm/hubspot/${hubspotConnection}`;
    hubspot.updateObject('deals', 100_003, { dealname: 'Webhook deal' });
    const delivery = hubspot.webhookDelivery(`https://api.example.test${path}`, [{ eventId: 777, subscriptionType: 'deal.propertyChange', objectId: 100_003, propertyName: 'dealname' }]);
    const tampered = await app.inject({ method: 'POST', url: path, headers: delivery.headers, payload: delivery.body.replace('100003', '100004') });
    expect(tampered.statusCode).toBe(401);
    expect(tampered.headers['content-type']).toContain('application/problem+json');
    const forged = hubspot.webhookDelivery(`https://api.example.test${path}`, [{ subscriptionType: 'deal.creation', objectId: 100_005 }], { secret: 'not-the-app-secret' });
    expect((await app.inject({ method: 'POST', url: path, headers: forged.headers, payload: forged.body })).statusCode).toBe(401);
    const ok = await app.inject({ method: 'POST', url: path, headers: delivery.headers, payload: delivery.body });
    expect(ok.json()).toEqual({ received: 1, accepted: 1, duplicates: 0 });
    const dup = await app.inject({ method: 'POST', url: path, headers: delivery.headers, payload: delivery.body });
    expect(dup.json()).toEqual({ received: 1, accepted: 0, duplicates: 1 });
    await intakeSettled(admin, hubspotConnection);
    const { rows } = await admin.query(`select name from public.crm_records where connection_id = $1 and external_id = '100003'`, [hubspotConnection]);
    expect(rows).toEqual([{ name: 'Webhook deal' }]);
    const deliveries = await admin.query(`select count(*)::int as n from public.crm_webhook_deliveries where connection_id = $1`, [hubspotConnection]);
    expect(deliveries.rows[0]).toEqual({ n: 1 });
  });

  it('a record that reads back 404 once is not marked deleted: a second read confirms before any tombstone', async () => {
    const path = `/v1/webhooks/crm/hubspot/${hubspotConnection}`;
    hubspot.updateObject('deals', 100_003, { dealname: 'Still here' });
    hubspot.injectFailure({ status: 404, body: JSON.stringify({ status: 'error', category: 'OBJECT_NOT_FOUND', message: 'Object not found' }) });
    const delivery = hubspot.webhookDelivery(`https://api.example.test${path}`, [{ eventId: 778, subscriptionType: 'deal.propertyChange', objectId: 100_003, propertyName: 'dealname' }]);
    expect((await app.inject({ method: 'POST', url: path, headers: delivery.headers, payload: delivery.body })).json()).toMatchObject({ accepted: 1 });
    await intakeSettled(admin, hubspotConnection);
    const { rows } = await admin.query(`select name, deleted_at from public.crm_records where connection_id = $1 and external_id = '100003'`, [hubspotConnection]);
    expect(rows).toEqual([{ name: 'Still here', deleted_at: null }]);
  });

  it('deleting a connection removes its schedule, credentials and records, and is audited', async () => {
    const res = await call('DELETE', `/v1/orgs/${orgA}/crm/connections/${kommoConnection}`, adminA);
    expect(res.statusCode).toBe(204);
    await expect(temporal.client.schedule.getHandle(crmSyncScheduleId(kommoConnection)).describe()).rejects.toThrow();
    for (const table of ['crm_connections', 'crm_credentials', 'crm_records', 'crm_sync_runs']) {
      const column = table === 'crm_connections' ? 'id' : 'connection_id';
      const { rows } = await admin.query(`select count(*)::int as n from public.${table} where ${column} = $1`, [kommoConnection]);
      expect(rows[0]).toEqual({ n: 0 });
    }
    const audit = await admin.query(`select action from public.audit_log where org_id = $1 and target_id = $2 order by id`, [orgA, kommoConnection]);
    expect(audit.rows.map((r) => r.action)).toEqual(['crm_connection.created', 'crm_connection.deleted']);
  });
});
