import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../api/app.js';
import { createRunService } from '../../api/services/runs.js';
import { sha256Hex } from '../../lib/crypto.js';
import type { FakeHubspot } from '../fakes/hubspot-server.js';
import type { FakeKommo } from '../../scripts/stack/crm-fakes/kommo.js';
import { signUserToken } from '../support/auth.js';
import { attempt, createOrgWithMembers } from '../support/db.js';
import { startFullTestApp, type FullTestApp } from '../support/full-app.js';
import { createCrmConnection, intakeSettled } from './support.js';

describe('CRM webhooks start and message agent runs according to agent triggers', () => {
  let full: FullTestApp;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let kommo: FakeKommo;
  let hubspot: FakeHubspot;
  let app: App;
  const kommoSecret = `kommo-secret-${randomUUID()}`;
  let orgA: string;
  let orgB: string;
  let memberA: string;
  let memberAId: string;
  let adminA: string;
  let adminB: string;
  let hubspotA: string;
  let hubspotB: string;
  let kommoA: string;

  beforeAll(async () => {
    full = await startFullTestApp({ agentWorker: true, kommoDataset: { leads: 5 }, hubspotDataset: { deals: 5 } });
    ({ app, pool, admin, kommo, hubspot } = full);

    const a = await createOrgWithMembers(admin, ['owner', 'admin', 'member']);
    const b = await createOrgWithMembers(admin, ['owner', 'admin']);
    orgA = a.orgId;
    orgB = b.orgId;
    adminA = await signUserToken(a.userWithRole('admin'));
    memberAId = a.userWithRole('member');
    memberA = await signUserToken(memberAId);
    adminB = await signUserToken(b.userWithRole('admin'));
    const token = `pat-na1-${randomUUID()}`;
    hubspot.addPrivateAppToken(token);
    const tokens = { accessToken: token, refreshToken: null, expiresAt: null };
    hubspotA = await createCrmConnection(admin, orgA, { provider: 'hubspot', apiBaseUrl: hubspot.url, authKind: 'token', tokens });
    hubspotB = await createCrmConnection(admin, orgB, { provider: 'hubspot', apiBaseUrl: hubspot.url, authKind: 'token', tokens });
    const longLived = `kommo-${randomUUID()}`;
    kommo.addLongLivedToken(longLived);
    kommoA = await createCrmConnection(admin, orgA, {
      provider: 'kommo',
      apiBaseUrl: kommo.url,
      authKind: 'token',
      tokens: { accessToken: longLived, refreshToken: null, expiresAt: null },
      webhookSecretHash: sha256Hex(kommoSecret),
    });
  });

  afterAll(async () => {
    await full?.close();
  });

  async function createAgent(orgId: string, token: string, body: Record<string, unknown>): Promise<string> {
    const res = await app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgId}/agents`,
      headers: { authorization: `Bearer ${token}` },
      payload: { name: `Agent ${randomUUID().slice(0, 6)}`, model: 'sandbox/echo', ...body },
    });
    expect(res.statusCode, res.body).toBe(201);
    return res.json().id;
  }

  const runsOf = async (agentId: string) =>
    (await admin.query<{ input: string; idempotency_key: string | null; created_by: string | null }>(`select input, idempotency_key, created_by from public.agent_runs where agent_id = $1`, [agentId])).rows;

  it('the agents API stores triggers, validates them, and members cannot change them', async () => {
    const agentId = await createAgent(orgA, adminA, { crmConnectionId: hubspotA, triggers: [{ event: 'incoming_message' }] });
    const got = await app.inject({ method: 'GET', url: `/v1/orgs/${orgA}/agents/${agentId}`, headers: { authorization: `Bearer ${memberA}` } });
    expect(got.json().triggers).toEqual([{ event: 'incoming_message' }]);
    const bad = await app.inject({
      method: 'PATCH',
      url: `/v1/orgs/${orgA}/agents/${agentId}`,
      headers: { authorization: `Bearer ${adminA}` },
      payload: { triggers: [{ event: 'lead_stage_entered' }] },
    });
    expect(bad.statusCode).toBe(400);
    const byMember = await app.inject({
      method: 'PATCH',
      url: `/v1/orgs/${orgA}/agents/${agentId}`,
      headers: { authorization: `Bearer ${memberA}` },
      payload: { triggers: [] },
    });
    expect(byMember.statusCode).toBe(403);
  });

  it('triggers need the agent to have a CRM connection, and deleting the connection removes them', async () => {
    const auth = { authorization: `Bearer ${adminA}` };
    const trigger = [{ event: 'lead_stage_entered', stageId: 'closedwon', cooldownMinutes: 5 }];
    const orphan = await app.inject({ method: 'POST', url: `/v1/orgs/${orgA}/agents`, headers: auth, payload: { name: 'No CRM', model: 'sandbox/echo', triggers: trigger } });
    expect(orphan.statusCode).toBe(400);
    expect(orphan.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(orphan.json().detail).toMatch(/set crmConnectionId, or remove the triggers/);
    expect(orphan.json().errors).toEqual([{ path: 'body.triggers', message: 'requires crmConnectionId' }]);

    const token = `pat-na1-${randomUUID()}`;
    hubspot.addPrivateAppToken(token);
    const connectionId = await createCrmConnection(admin, orgA, { provider: 'hubspot', apiBaseUrl: hubspot.url, authKind: 'token', tokens: { accessToken: token, refreshToken: null, expiresAt: null } });
    const agentId = await createAgent(orgA, adminA, { crmConnectionId: connectionId, triggers: trigger });
    const unbind = await app.inject({ method: 'PATCH', url: `/v1/orgs/${orgA}/agents/${agentId}`, headers: auth, payload: { crmConnectionId: null } });
    expect(unbind.statusCode).toBe(400);
    const agentUrl = `/v1/orgs/${orgA}/agents/${agentId}`;
    expect((await app.inject({ method: 'GET', url: agentUrl, headers: auth })).json()).toMatchObject({ crmConnectionId: connectionId, triggers: trigger });

    const removed = await app.inject({ method: 'DELETE', url: `/v1/orgs/${orgA}/crm/connections/${connectionId}`, headers: auth });
    expect(removed.statusCode).toBe(204);
    expect((await app.inject({ method: 'GET', url: agentUrl, headers: auth })).json()).toMatchObject({ crmConnectionId: null, triggers: [] });
  });

  it('a lead entering the same stage again within the cooldown starts no second run; after it, or with no cooldown, it does', async () => {
    const quiet = await createAgent(orgA, adminA, { crmConnectionId: hubspotA, triggers: [{ event: 'lead_stage_entered', stageId: 'appointmentscheduled' }] });
    const eager = await createAgent(orgA, adminA, { crmConnectionId: hubspotA, triggers: [{ event: 'lead_stage_entered', stageId: 'appointmentscheduled', cooldownMinutes: 0 }] });
    const path = `/v1/webhooks/crm/hubspot/${hubspotA}`;
    hubspot.updateObject('deals', 100_003, { dealstage: 'appointmentscheduled' });
    const enter = async () => {
      const delivery = hubspot.webhookDelivery(`https://api.example.test${path}`, [
        { eventId: Math.floor(Math.random() * 1e12), subscriptionType: 'deal.propertyChange', objectId: 100_003, propertyName: 'dealstage', propertyValue: 'appointmentscheduled' },
      ]);
      const res = await app.inject({ method: 'POST', url: path, headers: delivery.headers, payload: delivery.body });
      expect(res.json()).toEqual({ received: 1, accepted: 1, duplicates: 0 });
      await intakeSettled(admin, hubspotA);
    };

    await enter();
    await enter();
    expect(await runsOf(quiet)).toHaveLength(1);
    expect(await runsOf(eager)).toHaveLength(2);
    const { rows: firings } = await admin.query(`select lead_external_id, stage_id from public.agent_trigger_firings where agent_id = $1`, [quiet]);
    expect(firings).toEqual([{ lead_external_id: '100003', stage_id: 'appointmentscheduled' }]);

    // The default cooldown (60 minutes) has passed.
    await admin.query(`update public.agent_trigger_firings set fired_at = now() - interval '61 minutes' where agent_id = $1`, [quiet]);
    await enter();
    expect(await runsOf(quiet)).toHaveLength(2);
  });

  it('a firing claimed by an earlier attempt of the same delivery does not hold that delivery back', async () => {
    const agentId = await createAgent(orgA, adminA, { crmConnectionId: hubspotA, triggers: [{ event: 'lead_stage_entered', stageId: 'contractsent' }] });
    const path = `/v1/webhooks/crm/hubspot/${hubspotA}`;
    hubspot.updateObject('deals', 100_004, { dealstage: 'contractsent' });
    const eventId = Math.floor(Math.random() * 1e12);
    // As if an attempt of this delivery claimed the firing and died before starting the run.
    const deliveryId = sha256Hex(`${hubspotA}:hubspot:${eventId}`).slice(0, 32);
    await admin.query(
      `insert into public.agent_trigger_firings (org_id, agent_id, connection_id, lead_external_id, stage_id, delivery_id) values ($1, $2, $3, '100004', 'contractsent', $4)`,
      [orgA, agentId, hubspotA, deliveryId],
    );
    const delivery = hubspot.webhookDelivery(`https://api.example.test${path}`, [
      { eventId, subscriptionType: 'deal.propertyChange', objectId: 100_004, propertyName: 'dealstage', propertyValue: 'contractsent' },
    ]);
    expect((await app.inject({ method: 'POST', url: path, headers: delivery.headers, payload: delivery.body })).json()).toMatchObject({ accepted: 1 });
    await intakeSettled(admin, hubspotA);
    expect(await runsOf(agentId)).toHaveLength(1);
  });

  it('a signed HubSpot stage change starts exactly one run of the triggered agent, and a redelivery nothing', async () => {
    const trigger = [{ event: 'lead_stage_entered', stageId: 'closedwon' }];
    const triggered = await createAgent(orgA, adminA, { crmConnectionId: hubspotA, triggers: trigger });
    const otherStage = await createAgent(orgA, adminA, { crmConnectionId: hubspotA, triggers: [{ event: 'lead_stage_entered', stageId: 'closedlost' }] });
    const untriggered = await createAgent(orgA, adminA, { crmConnectionId: hubspotA });
    const foreign = await createAgent(orgB, adminB, { crmConnectionId: hubspotB, triggers: trigger });

    hubspot.updateObject('deals', 100_002, { dealstage: 'closedwon' });
    const path = `/v1/webhooks/crm/hubspot/${hubspotA}`;
    const delivery = hubspot.webhookDelivery(`https://api.example.test${path}`, [
      { eventId: 424_242, subscriptionType: 'deal.propertyChange', objectId: 100_002, propertyName: 'dealstage', propertyValue: 'closedwon' },
    ]);
    const first = await app.inject({ method: 'POST', url: path, headers: delivery.headers, payload: delivery.body });
    expect(first.json()).toEqual({ received: 1, accepted: 1, duplicates: 0 });
    await intakeSettled(admin, hubspotA);

    const runs = await runsOf(triggered);
    expect(runs).toHaveLength(1);
    expect(runs[0]!.idempotency_key).toMatch(new RegExp(`^webhook:[0-9a-f]{32}:${triggered}$`));
    expect(runs[0]!.created_by).toBeNull();
    expect(runs[0]!.input).toContain('lead 100002');
    expect(runs[0]!.input).toContain('stage closedwon');
    expect(runs[0]!.input).not.toContain('pat-na1');
    for (const agentId of [otherStage, untriggered, foreign]) expect(await runsOf(agentId)).toEqual([]);

    const again = await app.inject({ method: 'POST', url: path, headers: delivery.headers, payload: delivery.body });
    expect(again.json()).toEqual({ received: 1, accepted: 0, duplicates: 1 });
    await intakeSettled(admin, hubspotA);
    expect(await runsOf(triggered)).toHaveLength(1);
  });

  it("admins see the connection's recent webhook deliveries: open while the CRM fails, processed once it answers; members 403, other orgs 404", async () => {
    const path = `/v1/webhooks/crm/hubspot/${hubspotA}`;
    const eventId = Math.floor(Math.random() * 1e12);
    // Two failed reads: the intake retries after 1 s and 2 s, so the delivery stays open a while.
    hubspot.injectFailure({ status: 502, body: { status: 'error', message: 'bad gateway' }, pathPattern: /^\/crm\/v3\/objects\/deals\/100001/, times: 2 });
    const delivery = hubspot.webhookDelivery(`https://api.example.test${path}`, [{ eventId, subscriptionType: 'deal.propertyChange', objectId: 100_001, propertyName: 'amount', propertyValue: '5' }]);
    const answered = await app.inject({ method: 'POST', url: path, headers: delivery.headers, payload: delivery.body });
    expect(answered.statusCode).toBe(200);
    expect(answered.json()).toEqual({ received: 1, accepted: 1, duplicates: 0 });

    const url = `/v1/orgs/${orgA}/crm/connections/${hubspotA}/webhook-deliveries?limit=100`;
    const find = async () =>
      (await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${adminA}` } })).json().items.find((d: { dedupeKey: string }) => d.dedupeKey === `hubspot:${eventId}`);
    expect(await find()).toMatchObject({ kind: 'deal.propertyChange', objectType: 'deals', externalId: '100001', change: 'upsert', processedAt: null });
    await expect.poll(async () => (await find()).processedAt, { timeout: 30_000, interval: 100 }).toEqual(expect.any(String));
    const reads = hubspot.apiRequests().filter((r) => r.path.startsWith('/crm/v3/objects/deals/100001'));
    expect(reads.map((r) => r.status)).toEqual([502, 502, 200]);
    expect((await find()).error).toBeNull();

    // A read the CRM refuses for good (4xx) closes the delivery with its reason, shown in `error`.
    const refusedId = eventId + 1;
    hubspot.injectFailure({ status: 400, body: { status: 'error', message: 'Property values were not valid', category: 'VALIDATION_ERROR' }, pathPattern: /^\/crm\/v3\/objects\/deals\/100002/, times: 1 });
    const refused = hubspot.webhookDelivery(`https://api.example.test${path}`, [{ eventId: refusedId, subscriptionType: 'deal.propertyChange', objectId: 100_002, propertyName: 'amount', propertyValue: '7' }]);
    expect((await app.inject({ method: 'POST', url: path, headers: refused.headers, payload: refused.body })).statusCode).toBe(200);
    const findRefused = async () =>
      (await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${adminA}` } })).json().items.find((d: { dedupeKey: string }) => d.dedupeKey === `hubspot:${refusedId}`);
    await expect.poll(async () => (await findRefused())?.processedAt, { timeout: 30_000, interval: 100 }).toEqual(expect.any(String));
    expect((await findRefused()).error).toEqual(expect.stringContaining('Property values were not valid'));

    expect((await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${memberA}` } })).statusCode).toBe(403);
    expect((await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${adminB}` } })).statusCode).toBe(404);
  });

  it('an incoming Kommo message lands once in the lead conversation of the triggered agent', async () => {
    const agentId = await createAgent(orgA, adminA, { crmConnectionId: kommoA, triggers: [{ event: 'incoming_message' }] });
    const silent = await createAgent(orgA, adminA, { crmConnectionId: kommoA, triggers: [{ event: 'lead_stage_entered', stageId: '1' }] });
    const form = new URLSearchParams({
      'message[add][0][id]': randomUUID(),
      'message[add][0][type]': 'incoming',
      'message[add][0][entity_type]': 'lead',
      'message[add][0][entity_id]': '1000001',
      'message[add][0][text]': 'Hello, is the offer still valid?',
      'account[id]': '31000001',
    }).toString();
    const post = () =>
      app.inject({
        method: 'POST',
        url: `/v1/webhooks/crm/kommo/${kommoA}?secret=${kommoSecret}`,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: form,
      });
    expect((await post()).json()).toEqual({ received: 1, accepted: 1, duplicates: 0 });
    expect((await post()).json()).toEqual({ received: 1, accepted: 0, duplicates: 1 });
    await intakeSettled(admin, kommoA);

    const { rows } = await admin.query<{ thread_key: string; author: string | null; source: string; content: string }>(
      `select r.thread_key, m.author, m.source, m.content from public.conversation_messages m join public.agent_runs r on r.id = m.run_id where r.agent_id = $1`,
      [agentId],
    );
    expect(rows).toEqual([{ thread_key: `crm:${kommoA}:1000001`, author: null, source: 'crm_webhook', content: 'Hello, is the offer still valid?' }]);
    expect(await runsOf(silent)).toEqual([]);
  });

  it('a CRM message retried with the same source key is written and delivered once', async () => {
    const agentId = await createAgent(orgA, adminA, { crmConnectionId: kommoA, triggers: [{ event: 'incoming_message' }] });
    const runs = createRunService({ pool, temporal: full.temporal.client, taskQueue: full.taskQueue });
    const message = { orgId: orgA, agentId, threadKey: `crm:${kommoA}:1000003`, content: 'Retried message', sourceKey: `webhook:${randomUUID()}:${agentId}` };
    const first = await runs.postMessage({ kind: 'worker', orgId: orgA }, message);
    const second = await runs.postMessage({ kind: 'worker', orgId: orgA }, message);
    expect(second.messageId).toBe(first.messageId);
    expect(second.runId).toBe(first.runId);
    const { rows } = await admin.query(`select count(*)::int as n from public.conversation_messages where run_id = $1`, [first.runId]);
    expect(rows[0]).toEqual({ n: 1 });
    // A worker posts only into crm threads; people and keys keep their own rules.
    await expect(runs.postMessage({ kind: 'worker', orgId: orgA }, { orgId: orgA, agentId, threadKey: 'plain', content: 'x' })).rejects.toMatchObject({ status: 403 });
  });

  it('people cannot forge CRM messages, and a worker writes them only into crm threads of its org', async () => {
    const agentId = await createAgent(orgA, adminA, { crmConnectionId: kommoA });
    const { rows } = await admin.query<{ id: string }>(
      `insert into public.agent_runs (org_id, agent_id, input, thread_key) values ($1, $2, '', 'plain-thread') returning id`,
      [orgA, agentId],
    );
    const plainRun = rows[0]!.id;
    const { rows: crm } = await admin.query<{ id: string }>(
      `insert into public.agent_runs (org_id, agent_id, input, thread_key) values ($1, $2, '', $3) returning id`,
      [orgA, agentId, `crm:${kommoA}:1000002`],
    );
    const crmRun = crm[0]!.id;
    const forge = `insert into public.conversation_messages (org_id, run_id, author, content, source) values ($1, $2, null, 'forged', 'crm_webhook')`;
    expect(await attempt(pool, { kind: 'user', userId: memberAId }, forge, [orgA, crmRun])).toMatchObject({ errorCode: '42501' });
    expect(await attempt(pool, { kind: 'worker', orgId: orgA }, forge, [orgA, plainRun])).toMatchObject({ errorCode: '42501' });
    expect(await attempt(pool, { kind: 'worker', orgId: orgB }, forge, [orgA, crmRun])).toMatchObject({ errorCode: '42501' });
    expect(await attempt(pool, { kind: 'worker', orgId: orgA }, forge, [orgA, crmRun])).toMatchObject({ rowCount: 1 });
    const runAsWorker = `insert into public.agent_runs (org_id, agent_id, input, idempotency_key) values ($1, $2, 'x', $3)`;
    expect(await attempt(pool, { kind: 'worker', orgId: orgA }, runAsWorker, [orgA, agentId, `manual-${randomUUID()}`])).toMatchObject({ errorCode: '42501' });
  });
});
