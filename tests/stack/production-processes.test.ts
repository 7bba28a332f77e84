/**
 * The production entry points as separate processes, started in the order a deployment starts
 * them (docker/compose.yaml, docker/k8s): setup against a Temporal namespace that does not exist
 * yet, then the worker and the API. The worker reaches Postgres and Temporal through TCP relays
 * the test can cut, to show its /readyz following them; then what each process does on SIGTERM
 * (an in-flight activity finishes, the API flushes Sentry) and on a crash (reported, exit 1).
 *
 * Like a deployment, they own their database (createOwnDatabase), which setup migrates: on the
 * suite's shared one the API's dispatch sweep started other files' undispatched runs in this
 * file's namespace, and this worker ran them against this file's fake LLM.
 */
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/stack/ports.js';
import { startFakeLlm, type FakeLlmRequestBody, type FakeLlmServer, type RecordedLlmRequest } from '../../scripts/stack/sandbox-llm.js';
import { customSearchAttributes } from '../../workflows/search-attributes.js';
import { startFakeSentryIngest, type FakeSentryIngest } from '../fakes/sentry-ingest.js';
import { probe, runScript, startAppProcess, waitForProbe, type AppProcess } from '../support/app-processes.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { adminPool, createAgent, createOrgWithMembers, createOwnDatabase, type OwnDatabase } from '../support/db.js';
import { postgresTarget, startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { requireEnv, TEST_CODEC_KEYS, testDataConverter } from '../support/temporal.js';

const GRACE_MS = 20_000;
const SENTRY_ANSWER_DELAY_MS = 1_500;

describe('production processes, started as a deployment starts them', () => {
  const namespace = `prod-${randomUUID().slice(0, 8)}`;
  let database: OwnDatabase;
  let databaseUrl: string;
  let admin: pg.Pool;
  let llm: FakeLlmServer;
  let ingest: FakeSentryIngest;
  let connection: Connection;
  let client: Client;
  let postgresRelay: TcpProxy;
  let temporalRelay: TcpProxy;
  let common: Record<string, string>;
  const started: AppProcess[] = [];
  let worker: { app: AppProcess; readyz: string };
  let api: { app: AppProcess; base: string };

  beforeAll(async () => {
    database = await createOwnDatabase('prod');
    databaseUrl = database.appUrl;
    admin = adminPool({ url: database.adminUrl });
    llm = await startFakeLlm();
    ingest = await startFakeSentryIngest({ responseDelayMs: SENTRY_ANSWER_DELAY_MS });
    connection = await Connection.connect({ address: requireEnv('TEST_TEMPORAL_ADDRESS') });
    client = new Client({ connection, namespace, dataConverter: testDataConverter });
    const [temporalHost, temporalPort] = requireEnv('TEST_TEMPORAL_ADDRESS').split(':');
    temporalRelay = await startTcpProxy({ host: temporalHost!, port: Number(temporalPort) });
    postgresRelay = await startTcpProxy(postgresTarget(databaseUrl));
    common = {
      APP_ENV: 'test',
      LOG_LEVEL: 'info',
      TEMPORAL_ADDRESS: requireEnv('TEST_TEMPORAL_ADDRESS'),
      TEMPORAL_NAMESPACE: namespace,
      TEMPORAL_CODEC_KEYS: TEST_CODEC_KEYS,
      DATABASE_URL: databaseUrl,
      SENTRY_DSN: ingest.dsn,
    };
  });

  afterAll(async () => {
    await Promise.allSettled(started.map((p) => p.stop()));
    await postgresRelay?.close();
    await temporalRelay?.close();
    await connection?.close();
    await llm?.close();
    await ingest?.close();
    await admin?.end();
    await database?.drop();
  });

  async function startWorker(extra: Record<string, string>, preload?: string[]): Promise<{ app: AppProcess; readyz: string }> {
    const metricsPort = await freePort();
    const app = startAppProcess(
      'workers/main.ts',
      {
        ...common,
        LLM_BASE_URL: llm.url,
        METRICS_PORT: String(metricsPort),
        TEMPORAL_METRICS_BIND_ADDRESS: `127.0.0.1:${await freePort()}`,
        WORKER_SHUTDOWN_GRACE_MS: String(GRACE_MS),
        ...extra,
      },
      preload ? { preload } : {},
    );
    started.push(app);
    return { app, readyz: `http://127.0.0.1:${metricsPort}/readyz` };
  }

  async function startApi(extra: Record<string, string>): Promise<{ app: AppProcess; base: string }> {
    const port = await freePort();
    const app = startAppProcess(
      'api/main.ts',
      { ...common, SUPABASE_JWT_SECRET: TEST_JWT_SECRET, API_PORT: String(port), METRICS_PORT: String(await freePort()), ...extra },
      { preload: ['tests/support/crash-trigger.ts'] },
    );
    started.push(app);
    return { app, base: `http://127.0.0.1:${port}` };
  }

  /** A run whose input is its own, so its calls to the LLM are told apart from any other's (`isCallOf`). */
  async function startRun(llmDelayMs = 0): Promise<{ runId: string; workflowId: string; orgId: string; headers: Record<string, string>; isCallOf: (r: RecordedLlmRequest) => boolean }> {
    const org = await createOrgWithMembers(admin, ['owner']);
    const agentId = await createAgent(admin, org.orgId);
    const headers = { authorization: `Bearer ${await signUserToken(org.userWithRole('owner'))}`, 'content-type': 'application/json' };
    const input = `Qualify this lead (${randomUUID()})`;
    const saysInput = (body: FakeLlmRequestBody) => body.messages.some((m) => m.content === input);
    llm.setReplyFor(saysInput, { kind: 'text', content: 'Qualified.', usage: { inputTokens: 10, outputTokens: 3 }, delayMs: llmDelayMs });
    const res = await fetch(`${api.base}/v1/orgs/${org.orgId}/agents/${agentId}/runs`, { method: 'POST', headers, body: JSON.stringify({ input }) });
    expect(res.status).toBe(201);
    const { id: runId, workflowId } = (await res.json()) as { id: string; workflowId: string };
    const isCallOf = (r: RecordedLlmRequest) => r.path === '/v1/chat/completions' && Array.isArray((r.body as FakeLlmRequestBody | undefined)?.messages) && saysInput(r.body as FakeLlmRequestBody);
    return { runId, workflowId, orgId: org.orgId, headers, isCallOf };
  }

  /** Sentry events whose exception says `message`, once they have arrived. */
  async function eventsSaying(message: string, timeoutMs = 15_000): Promise<Array<Record<string, unknown>>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = ingest.events().filter((e) => JSON.stringify(e.exception ?? {}).includes(message));
      if (found.length > 0 || Date.now() > deadline) return found;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it('setup creates the missing namespace with its retention and search attributes; then the worker and the API come up and complete a run', async () => {
    await expect(connection.workflowService.describeNamespace({ namespace })).rejects.toMatchObject({ code: 5 });

    const setup = runScript('scripts/deploy-setup.ts', [], { ...common, DATABASE_MIGRATION_URL: database.adminUrl, TEMPORAL_NAMESPACE_RETENTION_DAYS: '7' });
    expect(setup.status, `${setup.stdout}\n${setup.stderr}`).toBe(0);
    expect(setup.stdout, 'setup migrates the empty database').toMatch(/migrations: \d{14}/);
    expect(setup.stdout).toContain(`namespace ${namespace} created (retention 7 days)`);
    const described = await connection.workflowService.describeNamespace({ namespace });
    expect(Number(described.config?.workflowExecutionRetentionTtl?.seconds)).toBe(7 * 24 * 3600);
    const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
    expect(Object.keys(customAttributes ?? {})).toEqual(expect.arrayContaining(Object.keys(customSearchAttributes)));

    // The worker reaches both dependencies through relays the next test cuts.
    worker = await startWorker({ DATABASE_URL: postgresTarget(databaseUrl).via(postgresRelay.port), TEMPORAL_ADDRESS: temporalRelay.address });
    api = await startApi({ CRASH_TRIGGER: 'report' });
    const [workerReady] = await Promise.all([
      waitForProbe(worker.readyz, worker.app, (p) => p.status === 200),
      waitForProbe(`${api.base}/readyz`, api.app, (p) => p.status === 200),
    ]);
    expect(workerReady.body.checks).toEqual({ postgres: 'ok', temporal: 'ok', polling: 'ok' });

    const { runId, orgId, headers } = await startRun();
    const deadline = Date.now() + 60_000;
    let run: { status?: string } = {};
    while (run.status !== 'completed' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      run = (await (await fetch(`${api.base}/v1/orgs/${orgId}/runs/${runId}`, { headers })).json()) as typeof run;
    }
    expect(run.status, worker.app.output()).toBe('completed');
  }, 300_000);

  it('the worker is unready while Postgres or Temporal is unreachable, and ready again when each returns', async () => {
    await postgresRelay.stop();
    const noPostgres = await waitForProbe(worker.readyz, worker.app, (p) => p.status === 503, 30_000);
    expect(noPostgres.body.checks?.postgres).toMatch(/^unreachable: /);
    expect(noPostgres.body.checks?.temporal).toBe('ok');
    await postgresRelay.start();
    await waitForProbe(worker.readyz, worker.app, (p) => p.status === 200, 60_000);

    await temporalRelay.stop();
    const noTemporal = await waitForProbe(worker.readyz, worker.app, (p) => p.status === 503, 30_000);
    expect(noTemporal.body.checks?.temporal).toMatch(/^unreachable: /);
    expect(noTemporal.body.checks?.postgres).toBe('ok');
    await temporalRelay.start();
    const back = await waitForProbe(worker.readyz, worker.app, (p) => p.status === 200, 90_000);
    expect(back.body.checks).toEqual({ postgres: 'ok', temporal: 'ok', polling: 'ok' });
  }, 240_000);

  it('on SIGTERM the worker lets an in-flight activity complete and exits 0 within its grace period', async () => {
    const llmDelayMs = 5_000;
    const { workflowId, isCallOf } = await startRun(llmDelayMs);
    // This run's own call: any other request reaching the fake would say nothing about this run's activity.
    const deadline = Date.now() + 60_000;
    while (!llm.requests.some(isCallOf) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(llm.requests.some(isCallOf), 'the LLM call never started').toBe(true);

    const signalledAt = Date.now();
    const exitCode = await worker.app.stop();
    const took = Date.now() - signalledAt;
    expect(exitCode, worker.app.output()).toBe(0);
    expect(took).toBeLessThan(GRACE_MS);
    // It waited for the answer the activity was waiting on (less the time the request had already run).
    expect(took).toBeGreaterThan(llmDelayMs - 2_000);

    const { events } = await client.workflow.getHandle(workflowId).fetchHistory();
    const scheduled = events!.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'callLlm');
    expect(scheduled).toBeDefined();
    const outcome = events!.find((e) => [e.activityTaskCompletedEventAttributes, e.activityTaskFailedEventAttributes, e.activityTaskTimedOutEventAttributes, e.activityTaskCanceledEventAttributes].some((a) => a && String(a.scheduledEventId) === String(scheduled!.eventId)));
    const told = events!.map((e) => `${e.eventId} ${e.eventType}${e.activityTaskScheduledEventAttributes ? ` ${e.activityTaskScheduledEventAttributes.activityType?.name}` : ''}`).join('\n');
    expect(outcome?.activityTaskCompletedEventAttributes, `the in-flight callLlm completed; history:\n${told}\n${JSON.stringify(outcome)}\n${worker.app.output()}`).toBeTruthy();
    await client.workflow.getHandle(workflowId).terminate('test over: no worker left to finish it');
  }, 180_000);

  it('the API flushes an error it reported to Sentry before it exits on SIGTERM', async () => {
    const before = ingest.envelopes.length;
    api.app.child.kill('SIGUSR2');
    const deadline = Date.now() + 15_000;
    while (ingest.envelopes.length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const envelope = ingest.envelopes[before];
    expect(envelope, 'the report never reached the ingest').toBeDefined();
    expect(envelope!.raw).toContain('reported just before shutdown');

    // The ingest is still holding its answer back: the API must wait for it.
    api.app.child.kill('SIGTERM');
    expect(await api.app.exited, api.app.output()).toBe(0);
    const exitedAt = Date.now();
    expect(envelope!.answeredAt, 'the API exited before its event was delivered').toBeDefined();
    expect(exitedAt).toBeGreaterThanOrEqual(envelope!.answeredAt!);
  }, 120_000);

  it.each([
    { process: 'api', trigger: 'uncaught', kind: 'uncaughtException', message: 'crash canary: uncaught exception' },
    { process: 'worker', trigger: 'rejection', kind: 'unhandledRejection', message: 'crash canary: unhandled rejection' },
  ])('the $process reports an $kind to Sentry and exits 1', async ({ process: name, trigger, kind, message }) => {
    const crashing =
      name === 'api'
        ? await startApi({ CRASH_TRIGGER: trigger }).then((a) => ({ app: a.app, probe: `${a.base}/readyz` }))
        : await startWorker({ CRASH_TRIGGER: trigger }, ['tests/support/crash-trigger.ts']).then((w) => ({ app: w.app, probe: w.readyz }));
    // Listening means main() is past its start-up, crash handlers included.
    await waitForProbe(crashing.probe, crashing.app, (p) => p.status > 0);
    crashing.app.child.kill('SIGUSR2');
    expect(await crashing.app.exited, crashing.app.output()).toBe(1);

    const [event] = await eventsSaying(message);
    expect(event, `no Sentry event for ${kind}`).toBeDefined();
    expect(event).toMatchObject({ level: 'fatal', tags: { service: name, crash: kind } });
    expect(JSON.stringify(event!.exception)).toContain('"handled":false');
    // The log says it too, as one fatal JSON line.
    expect(crashing.app.output()).toMatch(new RegExp(`"level":60[^\\n]*"kind":"${kind}"`));
    expect(await probe(crashing.probe)).toBeUndefined();
  }, 180_000);
});
