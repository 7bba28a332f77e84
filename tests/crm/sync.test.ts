import type { Worker } from '@temporalio/worker';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kommoTokenRequest } from '../../integrations/crm/kommo.js';
import { hubspotTokenRequest } from '../../integrations/crm/hubspot.js';
import type { CredentialStore } from '../../integrations/crm/credentials.js';
import { createCrmSyncWorker } from '../../workers/crm-sync-worker.js';
import { crmSyncWorkflowId } from '../../workflows/crm-sync-ids.js';
import { crmSync } from '../../workflows/crm-sync.js';
import { startFakeHubspot, type FakeHubspot } from '../fakes/hubspot-server.js';
import { startFakeKommo, type FakeKommo } from '../../scripts/stack/crm-fakes/kommo.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';
import { connectTestTemporal, testDataConverter, testLogger, uniqueTaskQueue, type TestTemporal } from '../support/temporal.js';
import { createCrmConnection, crmSettingsFor, testCredentialStore } from './support.js';

const LEADS = 10_000;

describe('crmSync against the fakes (real Temporal, real Postgres)', () => {
  let temporal: TestTemporal;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let kommo: FakeKommo;
  let hubspot: FakeHubspot;
  let credentials: CredentialStore;
  let worker: Worker;
  let running: Promise<void>;
  const taskQueue = uniqueTaskQueue('crm-sync-test');
  let orgA: string;
  let orgB: string;
  let kommoConnection: string;
  let hubspotConnection: string;

  beforeAll(async () => {
    temporal = await connectTestTemporal();
    pool = appPool({ max: 8 });
    admin = adminPool();
    kommo = await startFakeKommo({ dataset: { leads: LEADS, contacts: 300, companies: 40 }, rateLimitPerSecond: null });
    hubspot = await startFakeHubspot({ dataset: { deals: 250, contacts: 120 }, rateLimit: null });
    const settings = crmSettingsFor({ kommo, hubspot });
    credentials = testCredentialStore(pool, settings);
    worker = await createCrmSyncWorker({
      connection: temporal.nativeConnection,
      namespace: temporal.namespace,
      pool,
      credentials,
      logger: testLogger,
      taskQueue,
      workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
      shutdownGraceTime: '2 seconds',
      overlapMs: 2_000,
      // Several pages per activity (prefetching), yet few enough that the 15-page continue-as-new still happens.
      pagesPerActivity: 3,
      dataConverter: testDataConverter,
    });
    running = worker.run();
    orgA = (await createOrgWithMembers(admin, ['owner', 'member'])).orgId;
    orgB = (await createOrgWithMembers(admin, ['owner', 'member'])).orgId;
    const kommoTokens = await kommoTokenRequest({ baseUrl: kommo.url, app: settings.kommo.app! }, { kind: 'authorization_code', code: kommo.authorize() });
    kommoConnection = await createCrmConnection(admin, orgA, { provider: 'kommo', apiBaseUrl: kommo.url, tokens: kommoTokens });
    const hubspotTokens = await hubspotTokenRequest({ baseUrl: hubspot.url, app: settings.hubspot.app! }, { kind: 'authorization_code', code: hubspot.authorize() });
    hubspotConnection = await createCrmConnection(admin, orgA, { provider: 'hubspot', apiBaseUrl: hubspot.url, tokens: hubspotTokens });
  });

  afterAll(async () => {
    worker?.shutdown();
    await running;
    await kommo?.close();
    await hubspot?.close();
    await temporal?.close();
    await pool?.end();
    await admin?.end();
  });

  const sync = (connectionId: string, mode: 'incremental' | 'full', extra: { continueAsNewAfterPages?: number } = {}) =>
    temporal.client.workflow.execute(crmSync, {
      workflowId: crmSyncWorkflowId(connectionId),
      taskQueue,
      args: [{ orgId: orgA, connectionId, mode, trigger: 'manual', ...extra }],
    });

  const counts = async (connectionId: string) => {
    const { rows } = await admin.query<{ object_type: string; live: number; tombstones: number; distinct_ids: number }>(
      `select object_type, count(*) filter (where deleted_at is null)::int as live, count(*) filter (where deleted_at is not null)::int as tombstones,
              count(distinct external_id)::int as distinct_ids
         from public.crm_records where connection_id = $1 group by object_type`,
      [connectionId],
    );
    return Object.fromEntries(rows.map((r) => [r.object_type, r]));
  };

  it(`lands all ${LEADS} Kommo leads exactly once across pages of 250, with continue-as-new`, async () => {
    const outcome = await sync(kommoConnection, 'incremental', { continueAsNewAfterPages: 15 });
    expect(outcome).toMatchObject({ status: 'completed', deleted: 0, failed: 0 });
    expect(outcome.added).toBe(LEADS + 300 + 40 + 3 + 2);
    const c = await counts(kommoConnection);
    expect(c.deals).toMatchObject({ live: LEADS, distinct_ids: LEADS, tombstones: 0 });
    expect(c.contacts?.live).toBe(300);
    expect(c.pipelines?.live).toBe(2);
    const leadPages = kommo.apiRequests().filter((r) => r.path === '/api/v4/leads');
    expect(leadPages).toHaveLength(LEADS / 250);
    const { rows } = await admin.query(`select status, mode, added, updated, deleted, pages, finished_at from public.crm_sync_runs where connection_id = $1`, [kommoConnection]);
    expect(rows).toEqual([expect.objectContaining({ status: 'completed', mode: 'incremental', added: outcome.added, updated: 0, deleted: 0 })]);
    // Records went straight to Postgres: the history holds ids and counts, no record content.
    const history = await temporal.client.workflow.getHandle(crmSyncWorkflowId(kommoConnection)).fetchHistory();
    expect(JSON.stringify(history)).not.toContain('Lead 1');
  });

  it('an incremental run picks up updates, additions and deletions since the watermark', async () => {
    kommo.updateLead(1_000_010, { name: 'Lead ten, renamed' });
    kommo.updateLead(1_000_020, { status_id: 142 });
    kommo.deleteLead(1_000_030);
    kommo.deleteLead(1_000_031);
    const added = kommo.addLead({ name: 'Brand new lead', pipeline_id: 7001, status_id: 70011 });
    const before = kommo.apiRequests().length;
    const outcome = await sync(kommoConnection, 'incremental');
    expect(outcome).toMatchObject({ status: 'completed', added: 1, updated: 2, deleted: 2 });
    const listCalls = kommo.apiRequests().slice(before).filter((r) => r.path === '/api/v4/leads');
    expect(listCalls.every((r) => r.query.get('filter[updated_at][from]') !== null)).toBe(true);
    const { rows } = await admin.query<{ external_id: string; name: string; stage_id: string; deleted: boolean }>(
      `select external_id, name, stage_id, deleted_at is not null as deleted from public.crm_records
        where connection_id = $1 and object_type = 'deals' and external_id = any($2) order by external_id`,
      [kommoConnection, ['1000010', '1000020', '1000030', '1000031', String(added)]],
    );
    const byId = Object.fromEntries(rows.map((r) => [r.external_id, r]));
    expect(Object.fromEntries(rows.map((r) => [r.external_id, r.deleted]))).toEqual({
      '1000010': false,
      '1000020': false,
      '1000030': true,
      '1000031': true,
      [String(added)]: false,
    });
    expect(byId['1000010']?.name).toBe('Lead ten, renamed');
    expect(byId['1000020']?.stage_id).toBe('142');
  });

  it('a full HubSpot sync tombstones records the provider no longer has', async () => {
    expect(await sync(hubspotConnection, 'full')).toMatchObject({ status: 'completed', added: 250 + 120 + 10 + 3 + 2 });
    hubspot.archiveObject('deals', 100_001);
    hubspot.archiveObject('contacts', 30_001);
    hubspot.updateObject('deals', 100_002, { dealname: 'Renamed deal' });
    const outcome = await sync(hubspotConnection, 'full');
    expect(outcome).toMatchObject({ status: 'completed', added: 0, updated: 1, deleted: 2 });
    const c = await counts(hubspotConnection);
    expect(c.deals).toMatchObject({ live: 249, tombstones: 1 });
    expect(c.contacts).toMatchObject({ live: 119, tombstones: 1 });
  });

  it('absorbs a 429 storm and an access token that dies mid-sync', async () => {
    const refreshesBefore = kommo.tokens.refreshCount;
    kommo.injectFailure({ status: 429, body: { title: 'Too Many Requests', status: 429, retry_after: 0.3 }, pathPattern: /^\/api\/v4\/leads$/, times: 4 });
    kommo.tokens.expireAllAccessTokens();
    const outcome = await sync(kommoConnection, 'full');
    expect(outcome).toMatchObject({ status: 'completed', added: 0, deleted: 0 });
    expect(kommo.tokens.refreshCount).toBe(refreshesBefore + 1);
    expect(kommo.requests.filter((r) => r.status === 429)).toHaveLength(4);
    // Retry-After is honoured: the next lead request after each 429 waited at least its 300 ms.
    const leadCalls = kommo.requests.filter((r) => r.path === '/api/v4/leads');
    leadCalls.forEach((r, i) => {
      if (r.status === 429 && leadCalls[i + 1]) expect(leadCalls[i + 1]!.at - r.at).toBeGreaterThanOrEqual(290);
    });
    expect((await counts(kommoConnection)).deals).toMatchObject({ live: LEADS - 2 + 1 });
  });

  it('two concurrent refreshes spend the single-use refresh token once and keep the connection', async () => {
    const { rows } = await admin.query<{ version: number }>(`select version from public.crm_credentials where connection_id = $1`, [hubspotConnection]);
    const version = rows[0]!.version;
    const info = { orgId: orgA, connectionId: hubspotConnection, provider: 'hubspot' as const, authKind: 'oauth' as const, status: 'active' as const, apiBaseUrl: hubspot.url };
    const before = hubspot.tokens.refreshCount;
    const [a, b] = await Promise.all([credentials.refresh(info, version), credentials.refresh(info, version)]);
    expect(a.accessToken).toBe(b.accessToken);
    expect(hubspot.tokens.refreshCount).toBe(before + 1);
    const { adapter } = await credentials.open({ orgId: orgA, connectionId: hubspotConnection });
    hubspot.tokens.expireAllAccessTokens();
    await expect(adapter.whoAmI()).resolves.toEqual({ accountId: String(hubspot.portalId) });
    const status = await admin.query(`select status from public.crm_connections where id = $1`, [hubspotConnection]);
    expect(status.rows[0]).toEqual({ status: 'active' });
  });

  it("a revoked grant stops the sync with a non-retryable failure and flags the connection", async () => {
    const { rows } = await admin.query(`select status from public.crm_connections where id = $1`, [kommoConnection]);
    expect(rows[0]).toEqual({ status: 'active' });
    kommo.tokens.revokeAll();
    await expect(sync(kommoConnection, 'incremental')).rejects.toThrow();
    const after = await admin.query(`select status, last_error ->> 'type' as error from public.crm_connections where id = $1`, [kommoConnection]);
    expect(after.rows[0]).toEqual({ status: 'error', error: 'reauthorization-required' });
    const run = await admin.query(`select status, error ->> 'type' as type from public.crm_sync_runs where connection_id = $1 order by started_at desc limit 1`, [kommoConnection]);
    expect(run.rows[0]).toEqual({ status: 'failed', type: 'CrmConnectionUnavailable' });
  });

  it("org B's worker and members see none of org A's synced records", async () => {
    const { attempt } = await import('../support/db.js');
    const asWorkerB = await attempt(pool, { kind: 'worker', orgId: orgB }, `select count(*)::int as n from public.crm_records where org_id = $1`, [orgA]);
    expect(asWorkerB).toMatchObject({ rows: [{ n: 0 }] });
    const asWorkerA = await attempt(pool, { kind: 'worker', orgId: orgA }, `select count(*)::int as n from public.crm_records where org_id = $1`, [orgA]);
    expect(asWorkerA).toMatchObject({ rows: [{ n: expect.any(Number) }] });
    expect(('rows' in asWorkerA && (asWorkerA.rows[0]?.n as number)) || 0).toBeGreaterThan(LEADS);
  });
});
