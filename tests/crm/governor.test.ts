import type { Worker } from '@temporalio/worker';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultBudgets } from '../../integrations/crm/governor.js';
import { createCrmSyncWorker } from '../../workers/crm-sync-worker.js';
import { crmSyncWorkflowId } from '../../workflows/crm-sync-ids.js';
import { crmSync } from '../../workflows/crm-sync.js';
import { startFakeKommo, type FakeKommo } from '../../scripts/stack/crm-fakes/kommo.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';
import { connectTestTemporal, testDataConverter, testLogger, uniqueTaskQueue, type TestTemporal } from '../support/temporal.js';
import { createCrmConnection, crmSettingsFor, fastBudget, testCredentialStore } from './support.js';

const TOKEN = 'kommo-governor-token';
const LIMIT_PER_SECOND = 7; // Kommo's documented limit (reference A4)

/**
 * Asserts on the 429s the fake answered, never on time: with the governor's Kommo budget a sync
 * and concurrent agent reads stay under the provider's limit; without it (a budget far above the
 * limit) the same work runs into it.
 */
describe('rate governor: a sync and agent calls share one budget below the provider limit', { timeout: 120_000 }, () => {
  let temporal: TestTemporal;
  let pool: pg.Pool;
  let admin: pg.Pool;

  beforeAll(async () => {
    temporal = await connectTestTemporal();
    pool = appPool({ max: 10 });
    admin = adminPool();
  });

  afterAll(async () => {
    await temporal?.close();
    await pool?.end();
    await admin?.end();
  });

  async function syncUnder(budget: typeof fastBudget): Promise<{ kommo: FakeKommo; requests: number; rejected: number }> {
    const kommo = await startFakeKommo({ dataset: { leads: 600, contacts: 100, companies: 50 }, rateLimitPerSecond: LIMIT_PER_SECOND });
    kommo.addLongLivedToken(TOKEN);
    const taskQueue = uniqueTaskQueue('crm-governor');
    const credentials = testCredentialStore(pool, crmSettingsFor({ kommo }), { kommo: budget });
    let worker: Worker | undefined;
    let running: Promise<void> | undefined;
    try {
      worker = await createCrmSyncWorker({
        connection: temporal.nativeConnection,
        namespace: temporal.namespace,
        pool,
        credentials,
        logger: testLogger,
        taskQueue,
        workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
        shutdownGraceTime: '2 seconds',
        dataConverter: testDataConverter,
        pageSize: 50,
      });
      running = worker.run();
      const { orgId } = await createOrgWithMembers(admin, ['owner']);
      const connectionId = await createCrmConnection(admin, orgId, {
        provider: 'kommo',
        apiBaseUrl: kommo.url,
        authKind: 'token',
        tokens: { accessToken: TOKEN, refreshToken: null, expiresAt: null },
      });
      const sync = temporal.client.workflow.execute(crmSync, {
        taskQueue,
        workflowId: crmSyncWorkflowId(connectionId),
        args: [{ orgId, connectionId, mode: 'full', trigger: 'manual' }],
      });
      // An agent's reads while the sync runs, through the same connection's budget.
      const { adapter } = await credentials.open({ orgId, connectionId });
      const reads = Array.from({ length: 10 }, (_, i) => adapter.getRecord('deals', String(1_000_001 + i)));
      const [outcome, records] = await Promise.all([sync, Promise.all(reads)]);
      expect(outcome).toMatchObject({ status: 'completed', added: 600 + 100 + 50 + 3 + 2 });
      expect(records.every((r) => r !== null)).toBe(true);
      const api = kommo.apiRequests();
      return { kommo, requests: api.length, rejected: api.filter((r) => r.status === 429).length };
    } finally {
      worker?.shutdown();
      await running;
    }
  }

  it('with the default Kommo budget the provider answers (nearly) no 429s', async () => {
    const governed = await syncUnder(defaultBudgets.kommo);
    await governed.kommo.close();
    expect(governed.requests).toBeGreaterThanOrEqual(27);
    // A token bucket of 1 + 6/s never exceeds 7 in a second; one 429 is tolerated for network jitter.
    expect(governed.rejected).toBeLessThanOrEqual(1);
  });

  it('the same work without a budget below the limit runs into it (the fake does limit)', async () => {
    const ungoverned = await syncUnder(fastBudget);
    await ungoverned.kommo.close();
    expect(ungoverned.rejected).toBeGreaterThanOrEqual(3);
  });
});
