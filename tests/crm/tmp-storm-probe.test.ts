import type { Worker } from '@temporalio/worker';
import type pg from 'pg';
import { afterAll, beforeAll, it } from 'vitest';
import { kommoTokenRequest } from '../../integrations/crm/kommo.js';
import { createCrmSyncWorker } from '../../workers/crm-sync-worker.js';
import { crmSyncWorkflowId } from '../../workflows/crm-sync-ids.js';
import type { crmSync } from '../../workflows/crm-sync.js';
import { startFakeKommo, type FakeKommo } from '../fakes/kommo-server.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';
import { connectTestTemporal, testDataConverter, testLogger, uniqueTaskQueue, type TestTemporal } from '../support/temporal.js';
import { createCrmConnection, crmSettingsFor, testCredentialStore } from './support.js';

let temporal: TestTemporal; let pool: pg.Pool; let admin: pg.Pool; let kommo: FakeKommo; let worker: Worker; let running: Promise<void>;
const taskQueue = uniqueTaskQueue('probe');
beforeAll(async () => {
  temporal = await connectTestTemporal(); pool = appPool({ max: 8 }); admin = adminPool();
  kommo = await startFakeKommo({ dataset: { leads: 600 }, rateLimitPerSecond: null });
  const settings = crmSettingsFor({ kommo });
  worker = await createCrmSyncWorker({ connection: temporal.nativeConnection, namespace: temporal.namespace, pool, credentials: testCredentialStore(pool, settings), logger: testLogger, taskQueue, workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! }, shutdownGraceTime: '2 seconds', dataConverter: testDataConverter });
  running = worker.run();
});
afterAll(async () => { worker.shutdown(); await running; await kommo.close(); await temporal.close(); await pool.end(); await admin.end(); });
it('probe', async () => {
  const settings = crmSettingsFor({ kommo });
  const { orgId } = await createOrgWithMembers(admin, ['owner']);
  const tokens = await kommoTokenRequest({ baseUrl: kommo.url, app: settings.kommo.app! }, { kind: 'authorization_code', code: kommo.authorize() });
  const connectionId = await createCrmConnection(admin, orgId, { provider: 'kommo', apiBaseUrl: kommo.url, tokens });
  kommo.injectFailure({ status: 429, body: { title: 'Too Many Requests', status: 429, retry_after: 0.3 }, pathPattern: /^\/api\/v4\/leads$/, times: 4 });
  const t0 = Date.now();
  await temporal.client.workflow.execute<typeof crmSync>('crmSync', { workflowId: crmSyncWorkflowId(connectionId), taskQueue, args: [{ orgId, connectionId, mode: 'full' }] });
  console.log('total', Date.now() - t0);
  for (const r of kommo.requests) console.log(r.at - t0, r.method, r.path, r.status);
  const h = await temporal.client.workflow.getHandle(crmSyncWorkflowId(connectionId)).fetchHistory();
  for (const e of h.events ?? []) {
    const ms = Number(e.eventTime?.seconds ?? 0) * 1000 + Math.floor((e.eventTime?.nanos ?? 0) / 1e6);
    const st = e.activityTaskStartedEventAttributes;
    console.log(ms - t0, e.eventType, st ? `attempt=${st.attempt}` : '', e.activityTaskScheduledEventAttributes?.retryPolicy ? JSON.stringify(e.activityTaskScheduledEventAttributes.retryPolicy.initialInterval) : '');
  }
}, 60_000);
