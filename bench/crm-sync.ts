/**
 * `npm run bench:crm`: CRM sync throughput and the rate governor, on its own Temporal dev server
 * and embedded Postgres (like `npm run bench`). Prints; asserts nothing.
 *
 * 1. Throughput, BENCH_ROUNDS rounds (default 5): a sync of BENCH_CRM_RECORDS (default 100,000) Kommo leads from a zero-latency
 *    fake at Kommo's maximum page size (250), versus a raw batched upsert of the same rows from
 *    Node (and versus `upsertRecords` alone, to show where the difference goes). Also Temporal
 *    history events per 10k records and the process's peak RSS while syncing. The fake runs in
 *    a child process: a provider is another machine, and its page generation is not our cost.
 * 2. Governor: a sync against a fake that allows BENCH_CRM_LIMIT (default 10) requests per
 *    second, with the governor's budget at 96% of it: achieved requests/s and the share of 429s.
 */
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { startSuiteStack } from '../scripts/stack/suite-stack.js';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type Worker } from '@temporalio/worker';
import { CredentialStore, storeTokens } from '../integrations/crm/credentials.js';
import { RateGovernor, type RateBudget } from '../integrations/crm/governor.js';
import { KommoAdapter, KOMMO_MAX_PAGE } from '../integrations/crm/kommo.js';
import { toRecordRow, upsertRecords } from '../integrations/crm/record-store.js';
import type { CrmSettings } from '../integrations/crm/settings.js';
import type { CrmRecord } from '../integrations/crm/types.js';
import { generateKeySpec, parseKeyring } from '../lib/crypto.js';
import { createPool, withPrincipal, withServiceRole } from '../lib/db.js';
import { createLogger } from '../lib/logger.js';
import { createDataConverter } from '../lib/temporal-codec.js';
import { startFakeKommo, type KommoFakeOptions } from '../scripts/stack/crm-fakes/kommo.js';
import { createCrmSyncWorker } from '../workers/crm-sync-worker.js';
import { crmSyncWorkflowId } from '../workflows/crm-sync-ids.js';
import { crmSync } from '../workflows/crm-sync.js';
import { FigureLog, ROUNDS } from './support/figures.js';

const RECORDS = Number(process.env.BENCH_CRM_RECORDS ?? 100_000);
const LIMIT = Number(process.env.BENCH_CRM_LIMIT ?? 10);
const LIMITED_REQUESTS = Number(process.env.BENCH_CRM_LIMITED_REQUESTS ?? 200);
const TOKEN = 'bench-long-lived-token';
const log = (msg: string) => console.log(`[bench:crm] ${msg}`);
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const rate = (n: number, ms: number) => `${((n / ms) * 1000).toFixed(0)} records/s`;

const settings: CrmSettings = {
  timeoutMs: 30_000,
  kommo: { authorizeUrl: 'http://127.0.0.1/oauth', accountHostPattern: /^127\.0\.0\.1:\d+$/, scheme: 'http' },
  hubspot: { authorizeUrl: 'http://127.0.0.1/oauth', apiBaseUrl: 'http://127.0.0.1:9' },
  // The fakes listen on loopback, which the SSRF guard refuses for customer-chosen hosts.
  ssrf: { allowedHosts: ['127.0.0.1'] },
};

async function main() {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const stack = await startSuiteStack({ name: 'bench_crm', postgresDataDir: path.join(import.meta.dirname, '..', '.data', 'bench-crm-postgres'), log });
  const { temporal: temporalServer, adminUrl, appUrl } = stack;
  const admin = createPool(adminUrl, { max: 4 });
  const pool = createPool(appUrl, { max: 30, applicationName: 'bench-crm' });
  const dataConverter = createDataConverter(undefined);
  const connection = await Connection.connect({ address: temporalServer.address });
  const client = new Client({ connection, namespace: temporalServer.namespace, dataConverter });
  const nativeConnection = await NativeConnection.connect({ address: temporalServer.address });
  const keyring = parseKeyring(generateKeySpec('bench'));
  const logger = createLogger({ name: 'bench', level: 'silent' });

  const orgId = randomUUID();
  await withServiceRole(admin, (tx) => tx.query(`insert into public.organizations (id, name) values ($1, 'Bench org')`, [orgId]));

  /** A connection to a fake account that already accepts TOKEN. */
  async function connect(kommo: { url: string }): Promise<string> {
    const connectionId = randomUUID();
    await withServiceRole(admin, async (tx) => {
      await tx.query(
        `insert into public.crm_connections (id, org_id, provider, name, auth_kind, status, api_base_url) values ($1, $2, 'kommo', 'Bench', 'token', 'active', $3)`,
        [connectionId, orgId, kommo.url],
      );
      await storeTokens(tx, keyring, { orgId, connectionId }, { accessToken: TOKEN, refreshToken: null, expiresAt: null });
    });
    return connectionId;
  }

  async function withWorker<T>(budget: RateBudget, pageSize: number, fn: (taskQueue: string, credentials: CredentialStore) => Promise<T>): Promise<T> {
    const credentials = new CredentialStore({ pool, keyring, settings, governor: new RateGovernor(pool, { budgets: { kommo: budget } }) });
    const taskQueue = `bench-crm-${randomUUID()}`;
    const worker: Worker = await createCrmSyncWorker({
      connection: nativeConnection,
      namespace: temporalServer.namespace,
      pool,
      credentials,
      logger,
      taskQueue,
      pageSize,
      dataConverter,
      shutdownGraceTime: '2 seconds',
    });
    const running = worker.run();
    try {
      return await fn(taskQueue, credentials);
    } finally {
      worker.shutdown();
      await running;
    }
  }

  // 1. Throughput ------------------------------------------------------------------------------------
  // Each round syncs the whole fake account into a fresh connection, then upserts the same rows
  // raw into another fresh one (and through upsertRecords into a third): the sides of a ratio are
  // measured back to back, so the shared machine's drift between rounds stays out of it.
  log(`generating a fake Kommo account with ${RECORDS} leads`);
  const kommo = await startFakeKommoProcess({ dataset: { leads: RECORDS, contacts: 0, companies: 0, users: 1 }, rateLimitPerSecond: null });
  // The same rows, fetched once beforehand (not timed), for the raw and store sides.
  const adapter = new KommoAdapter({ baseUrl: kommo.url, accessToken: async () => TOKEN, timeoutMs: 30_000 });
  const rows: CrmRecord[] = [];
  for (let cursor: string | null = null; ; ) {
    const page = await adapter.listPage('deals', { cursor, pageSize: KOMMO_MAX_PAGE });
    rows.push(...page.records);
    if (!page.nextCursor) break;
    cursor = page.nextCursor;
  }
  const batches: CrmRecord[][] = [];
  for (let i = 0; i < rows.length; i += KOMMO_MAX_PAGE) batches.push(rows.slice(i, i + KOMMO_MAX_PAGE));

  const figures = new FigureLog('crm-sync');
  const syncRate = figures.add('sync', `crmSync full sync of ${RECORDS} leads, pages of ${KOMMO_MAX_PAGE}`, 'records/s');
  const rawRate = figures.add('raw', 'raw batched upsert (owner, no RLS, no change detection)', 'records/s');
  const storeRate = figures.add('store', 'upsertRecords alone (RLS transaction per batch)', 'records/s');
  figures.ratio('ratio', 'sync / raw batched upsert', 'sync', 'raw', { op: '>=', value: 0.6 });
  figures.ratio('store-ratio', 'upsertRecords alone / raw batched upsert', 'store', 'raw');
  const eventsPer10k = figures.add('events', 'sync history events per 10k records', 'events');
  const peakRss = figures.add('rss', 'worker process peak RSS while syncing', 'MiB');

  const unlimited: RateBudget = { capacity: 1_000_000, refillPerSecond: 1_000_000 };
  await withWorker(unlimited, KOMMO_MAX_PAGE, async (taskQueue) => {
    for (let round = 1; round <= ROUNDS; round++) {
      const syncConnection = await connect(kommo);
      const rssBefore = process.memoryUsage().rss;
      let rssPeak = rssBefore;
      const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 100);
      let t0 = performance.now();
      const outcome = await client.workflow.execute(crmSync, {
        taskQueue,
        workflowId: crmSyncWorkflowId(syncConnection),
        args: [{ orgId, connectionId: syncConnection, mode: 'full', trigger: 'manual' }],
      });
      const syncMs = performance.now() - t0;
      clearInterval(sampler);
      syncRate.sample((outcome.added / syncMs) * 1000);
      peakRss.sample(rssPeak / 2 ** 20);
      let historyEvents = 0;
      for await (const execution of client.workflow.list({ query: `WorkflowId = '${crmSyncWorkflowId(syncConnection)}'` })) {
        const history = await client.workflow.getHandle(execution.workflowId, execution.runId).fetchHistory();
        historyEvents += history.events?.length ?? 0;
      }
      eventsPer10k.sample((historyEvents / outcome.added) * 10_000);

      const rawConnection = randomUUID();
      await withServiceRole(admin, (tx) =>
        tx.query(`insert into public.crm_connections (id, org_id, provider, name, auth_kind, status) values ($1, $2, 'kommo', 'Raw', 'token', 'active')`, [rawConnection, orgId]),
      );
      t0 = performance.now();
      for (const batch of batches) {
        // As the table owner: no RLS, no transaction wrapper, no change detection.
        await admin.query(
          `insert into public.crm_records as r (org_id, connection_id, object_type, external_id, name, email, pipeline_id, stage_id, owner_id, properties, remote_updated_at)
           select $1, $2, 'deals', x.external_id, x.name, x.email, x.pipeline_id, x.stage_id, x.owner_id, x.properties, x.remote_updated_at
             from jsonb_to_recordset($3::jsonb) as x(external_id text, name text, email text, pipeline_id text, stage_id text, owner_id text, properties jsonb, remote_updated_at timestamptz)
           on conflict (connection_id, object_type, external_id) do update
             set name = excluded.name, email = excluded.email, pipeline_id = excluded.pipeline_id, stage_id = excluded.stage_id,
                 owner_id = excluded.owner_id, properties = excluded.properties, remote_updated_at = excluded.remote_updated_at`,
          [orgId, rawConnection, JSON.stringify(batch.map(toRecordRow))],
        );
      }
      const rawMs = performance.now() - t0;
      rawRate.sample((rows.length / rawMs) * 1000);

      const storeConnection = randomUUID();
      await withServiceRole(admin, (tx) =>
        tx.query(`insert into public.crm_connections (id, org_id, provider, name, auth_kind, status) values ($1, $2, 'kommo', 'Store', 'token', 'active')`, [storeConnection, orgId]),
      );
      t0 = performance.now();
      for (const batch of batches) {
        await withPrincipal(pool, { kind: 'worker', orgId }, (tx) => upsertRecords(tx, { orgId, connectionId: storeConnection }, 'deals', batch, null));
      }
      const storeMs = performance.now() - t0;
      storeRate.sample((rows.length / storeMs) * 1000);

      log(`round ${round}: sync ${outcome.added} records in ${(syncMs / 1000).toFixed(1)} s = ${rate(outcome.added, syncMs)} (${outcome.pages} pages); raw ${rate(rows.length, rawMs)}; upsertRecords alone ${rate(rows.length, storeMs)}; ratio sync/raw ${(((outcome.added / syncMs) * rawMs) / rows.length).toFixed(2)}; history ${historyEvents} events; peak RSS ${mib(rssPeak)} (before ${mib(rssBefore)})`);
    }
  });
  await kommo.close();

  // 2. Governor under a provider limit ----------------------------------------------------------------
  const limitedLeads = LIMITED_REQUESTS * 10;
  // In this process: the count of 429 answers comes from the fake's request log.
  const limited = await startFakeKommo({ dataset: { leads: limitedLeads, contacts: 0, companies: 0, users: 1 }, rateLimitPerSecond: LIMIT });
  limited.addLongLivedToken(TOKEN);
  const limitedConnection = await connect(limited);
  const budget: RateBudget = { capacity: 1, refillPerSecond: LIMIT * 0.96 };
  // One sync alone is paced by its own page round trips; three agent-like readers on the same
  // connection add the load that makes the governor, not the pipeline, the limit.
  await withWorker(budget, 10, async (taskQueue, credentials) => {
    let syncing = true;
    const sync = client.workflow
      .execute(crmSync, {
        taskQueue,
        workflowId: crmSyncWorkflowId(limitedConnection),
        args: [{ orgId, connectionId: limitedConnection, mode: 'full', trigger: 'manual' }],
      })
      .finally(() => (syncing = false));
    const { adapter } = await credentials.open({ orgId, connectionId: limitedConnection });
    const reader = async (offset: number) => {
      for (let i = 0; syncing; i++) await adapter.getRecord('deals', String(1_000_001 + ((offset + i * 3) % limitedLeads))).catch(() => null);
    };
    await Promise.all([sync, reader(0), reader(1), reader(2)]);
  });
  const api = limited.apiRequests();
  const spanMs = (api.at(-1)?.at ?? 0) - (api[0]?.at ?? 0);
  const rejected = api.filter((r) => r.status === 429).length;
  figures.add('governor-rate', `governor at ${budget.refillPerSecond}/s against a limit of ${LIMIT}/s: achieved`, 'requests/s', { op: '>=', value: LIMIT * 0.95 }).sample((api.length - 1) / (spanMs / 1000));
  figures.add('governor-429', 'governor: share of requests answered 429', '%', { op: '<=', value: 1 }).sample((rejected / api.length) * 100);
  log(
    `governor at ${budget.refillPerSecond}/s against a limit of ${LIMIT}/s: ${api.length} requests in ${(spanMs / 1000).toFixed(1)} s = ` +
      `${((api.length - 1) / (spanMs / 1000)).toFixed(2)} requests/s (goal >= ${(LIMIT * 0.95).toFixed(1)}), ` +
      `${rejected} answered 429 = ${((rejected / api.length) * 100).toFixed(2)}% (goal < 1%)`,
  );
  await limited.close();
  figures.finish();

  await nativeConnection.close();
  await connection.close();
  await pool.end();
  await admin.end();
  await stack.stop();
}

/** The throughput run's fake, in a child process (see bench/support/fake-kommo-process.ts). */
async function startFakeKommoProcess(options: KommoFakeOptions): Promise<{ url: string; close(): Promise<void> }> {
  const child = fork(path.join(import.meta.dirname, 'support', 'fake-kommo-process.ts'), { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (message: { url: string }) => resolve(message.url));
    child.once('exit', (code) => reject(new Error(`the fake Kommo process exited with code ${code} before listening`)));
    child.send({ options, token: TOKEN });
  });
  return {
    url,
    async close() {
      child.disconnect();
      await exited;
    },
  };
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
