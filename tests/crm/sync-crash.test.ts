import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Worker } from '@temporalio/worker';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCrmSyncWorker } from '../../workers/crm-sync-worker.js';
import { crmSyncWorkflowId } from '../../workflows/crm-sync-ids.js';
import { crmSync } from '../../workflows/crm-sync.js';
import { startFakeKommo, type FakeKommo } from '../../scripts/stack/crm-fakes/kommo.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';
import { connectTestTemporal, testDataConverter, testLogger, uniqueTaskQueue, type TestTemporal } from '../support/temporal.js';
import { createCrmConnection, crmSettingsFor, testCredentialStore, testKeySpec } from './support.js';

const crashWorkerPath = fileURLToPath(new URL('./crash-worker.ts', import.meta.url));
const LEADS = 3_000;
const PAGE = 100;
const TOKEN = 'kommo-long-lived-sync-token';

describe('crmSync: a worker SIGKILLed mid-sync is replaced and resumes from its checkpoint', { timeout: 120_000 }, () => {
  let temporal: TestTemporal;
  let kommo: FakeKommo;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let child: ChildProcess | undefined;
  let replacement: { worker: Worker; running: Promise<void> } | undefined;

  beforeAll(async () => {
    temporal = await connectTestTemporal();
    // A little latency per request so the kill lands while lead pages are being fetched.
    kommo = await startFakeKommo({ dataset: { leads: LEADS, contacts: 20, companies: 10, users: 3 }, rateLimitPerSecond: null, latencyMs: 40 });
    kommo.addLongLivedToken(TOKEN);
    pool = appPool({ max: 8 });
    admin = adminPool();
  });

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (replacement) {
      replacement.worker.shutdown();
      await replacement.running;
    }
    await kommo?.close();
    await temporal?.close();
    await pool?.end();
    await admin?.end();
  });

  const leadPages = () =>
    kommo
      .apiRequests()
      .filter((r) => r.path === '/api/v4/leads' && r.status === 200)
      .map((r) => Number(r.query.get('page')));

  it('every record lands exactly once, and pages before the checkpoint are not fetched again', async () => {
    const taskQueue = uniqueTaskQueue('crm-sync-crash');
    const { orgId } = await createOrgWithMembers(admin, ['owner']);
    const connectionId = await createCrmConnection(admin, orgId, {
      provider: 'kommo',
      apiBaseUrl: kommo.url,
      authKind: 'token',
      tokens: { accessToken: TOKEN, refreshToken: null, expiresAt: null },
    });

    child = spawn(process.execPath, ['--import', 'tsx', crashWorkerPath], {
      env: { ...process.env, CRM_CRASH_MODE: 'sync', CRM_CRASH_TASK_QUEUE: taskQueue, CRM_CRASH_PAGE_SIZE: String(PAGE), CRM_TEST_KEY_SPEC: testKeySpec },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const proc = child;
    await new Promise<void>((resolve, reject) => {
      proc.stdout!.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('crm-crash-worker ready')) resolve();
      });
      proc.once('exit', (code, signal) => reject(new Error(`crash worker exited early (${code ?? signal})`)));
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => proc.once('exit', (_code, signal) => resolve(signal)));

    const handle = await temporal.client.workflow.start(crmSync, {
      taskQueue,
      workflowId: crmSyncWorkflowId(connectionId),
      args: [{ orgId, connectionId, mode: 'incremental', trigger: 'manual', heartbeatTimeoutSeconds: 2 }],
      workflowTaskTimeout: '2 seconds',
    });
    const deadline = Date.now() + 60_000;
    while (leadPages().length < 6) {
      if (Date.now() > deadline) throw new Error('the crash worker never reached the lead pages');
      await new Promise((r) => setTimeout(r, 10));
    }
    proc.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');

    // What the dead worker committed: records and the cursor of the next page, in one transaction.
    const checkpoint = await admin.query<{ phase: string; cursor: string | null }>(
      `select phase, cursor from public.crm_sync_state where connection_id = $1 and object_type = 'deals'`,
      [connectionId],
    );
    expect(checkpoint.rows[0]).toMatchObject({ phase: 'records', cursor: expect.stringMatching(/^\d+$/) });
    const resumeAt = Number(checkpoint.rows[0]!.cursor);
    const landed = await admin.query<{ n: number }>(`select count(*)::int as n from public.crm_records where connection_id = $1 and object_type = 'deals'`, [connectionId]);
    expect(landed.rows[0]!.n).toBe((resumeAt - 1) * PAGE);
    expect(resumeAt).toBeLessThan(LEADS / PAGE);
    const fetchedBeforeKill = kommo.apiRequests().length;

    const worker = await createCrmSyncWorker({
      connection: temporal.nativeConnection,
      namespace: temporal.namespace,
      pool,
      credentials: testCredentialStore(pool, crmSettingsFor({ kommo })),
      logger: testLogger,
      taskQueue,
      workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
      shutdownGraceTime: '2 seconds',
      dataConverter: testDataConverter,
      pageSize: PAGE,
    });
    replacement = { worker, running: worker.run() };

    const outcome = await handle.result();
    expect(outcome).toMatchObject({ status: 'completed', added: LEADS + 20 + 10 + 3 + 2, updated: 0, deleted: 0, failed: 0 });
    const { rows } = await admin.query<{ live: number; distinct_ids: number }>(
      `select count(*)::int as live, count(distinct external_id)::int as distinct_ids from public.crm_records
        where connection_id = $1 and object_type = 'deals' and deleted_at is null`,
      [connectionId],
    );
    expect(rows[0]).toEqual({ live: LEADS, distinct_ids: LEADS });

    // The new worker started at the checkpoint: no page before it was fetched again, and every
    // page was fetched (the one in flight at the kill may have been fetched twice).
    const after = kommo
      .apiRequests()
      .slice(fetchedBeforeKill)
      .filter((r) => r.path === '/api/v4/leads' && r.status === 200)
      .map((r) => Number(r.query.get('page')));
    expect(Math.min(...after)).toBe(resumeAt);
    const all = leadPages();
    for (let page = 1; page <= LEADS / PAGE; page++) expect(all).toContain(page);
    for (let page = 1; page < resumeAt; page++) expect(all.filter((p) => p === page)).toHaveLength(1);
    const run = await admin.query(`select status, added from public.crm_sync_runs where connection_id = $1`, [connectionId]);
    expect(run.rows).toEqual([{ status: 'completed', added: outcome.added }]);
  });
});
