/**
 * Every process reaches Temporal through mutual TLS: the suite's TLS terminator
 * (scripts/stack/tls-terminator.ts) demands a client certificate from its CA and verifies the
 * server name, in front of the dev server. Setup creates a namespace of its own (so nothing else
 * in the suite polls its task queues), the worker and the API start against it, a run started
 * through the API completes, and replay fetches its history by query, all through TLS. A client
 * certificate from another CA keeps the API and the worker unready, with the reason. The processes
 * own their database, as a deployment does (createOwnDatabase: the API's dispatch sweep would
 * start other files' runs here).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/stack/ports.js';
import { TEST_SERVER_NAME } from '../../scripts/stack/tls-terminator.js';
import { startFakeLlm, type FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { probe, runScript, startAppProcess, waitForProbe, type AppProcess } from '../support/app-processes.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { adminPool, createAgent, createOrgWithMembers, createOwnDatabase, type OwnDatabase } from '../support/db.js';
import { TEST_CODEC_KEYS } from '../support/temporal.js';

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run through vitest (tests/support/global-setup.ts)`);
  return value;
}

describe('secured Temporal connections (mutual TLS through a terminator)', () => {
  const certs = (file: string) => path.join(env('TEST_TEMPORAL_TLS_DIR'), file);
  const namespace = `tls-${randomUUID().slice(0, 8)}`;
  let tlsEnv: Record<string, string>;
  let database: OwnDatabase;
  let admin: pg.Pool;
  let llm: FakeLlmServer;
  const started: AppProcess[] = [];

  beforeAll(async () => {
    database = await createOwnDatabase('tls');
    admin = adminPool({ url: database.adminUrl });
    // Every call gets the same answer: under load the first LLM attempt can time out and be
    // retried, and a one-shot queued reply would then be spent on the abandoned attempt.
    llm = await startFakeLlm({ defaultReply: () => ({ kind: 'text', content: 'Qualified over mutual TLS.', usage: { inputTokens: 10, outputTokens: 5 } }) });
    tlsEnv = {
      APP_ENV: 'test',
      LOG_LEVEL: 'info',
      TEMPORAL_ADDRESS: env('TEST_TEMPORAL_TLS_ADDRESS'),
      TEMPORAL_NAMESPACE: namespace,
      TEMPORAL_CODEC_KEYS: TEST_CODEC_KEYS,
      // A path for the CA and certificate, the PEM itself for the key: both forms are accepted.
      TEMPORAL_TLS_CA: certs('ca.crt'),
      TEMPORAL_TLS_CERT: certs('client.crt'),
      TEMPORAL_TLS_KEY: readFileSync(certs('client.key'), 'utf8'),
      // The terminator is dialled as 127.0.0.1; its certificate names only this.
      TEMPORAL_TLS_SERVER_NAME: TEST_SERVER_NAME,
    };
  });

  afterAll(async () => {
    await Promise.allSettled(started.map((p) => p.stop()));
    await llm?.close();
    await admin?.end();
    await database?.drop();
  });

  async function startWorker(extra: Record<string, string>): Promise<{ app: AppProcess; readyz: string }> {
    const metricsPort = await freePort();
    const app = startAppProcess('workers/main.ts', {
      ...tlsEnv,
      DATABASE_URL: database.appUrl,
      LLM_BASE_URL: llm.url,
      METRICS_PORT: String(metricsPort),
      TEMPORAL_METRICS_BIND_ADDRESS: `127.0.0.1:${await freePort()}`,
      ...extra,
    });
    started.push(app);
    return { app, readyz: `http://127.0.0.1:${metricsPort}/readyz` };
  }

  async function startApi(extra: Record<string, string>): Promise<{ app: AppProcess; base: string }> {
    const port = await freePort();
    const app = startAppProcess('api/main.ts', {
      ...tlsEnv,
      DATABASE_URL: database.appUrl,
      SUPABASE_JWT_SECRET: TEST_JWT_SECRET,
      API_PORT: String(port),
      METRICS_PORT: String(await freePort()),
      ...extra,
    });
    started.push(app);
    return { app, base: `http://127.0.0.1:${port}` };
  }

  it('setup creates the namespace, the worker completes a run the API started, and replay fetches it by query', async () => {
    const setup = runScript('scripts/deploy-setup.ts', [], { ...tlsEnv, DATABASE_MIGRATION_URL: database.adminUrl, TEMPORAL_NAMESPACE_RETENTION_DAYS: '3' });
    expect(setup.status, `${setup.stdout}\n${setup.stderr}`).toBe(0);
    expect(setup.stdout).toContain(`namespace ${namespace} created (retention 3 days)`);
    expect(setup.stdout).toMatch(/search attributes: added /);

    const worker = await startWorker({});
    const api = await startApi({});
    const [workerReady, apiReady] = await Promise.all([
      waitForProbe(worker.readyz, worker.app, (p) => p.status === 200),
      waitForProbe(`${api.base}/readyz`, api.app, (p) => p.status === 200),
    ]);
    expect(workerReady.body.checks).toEqual({ postgres: 'ok', temporal: 'ok', polling: 'ok' });
    expect(apiReady.body.checks).toEqual({ postgres: 'ok', temporal: 'ok' });
    // What each process logged about its connection: secured, never the key material.
    expect(worker.app.output()).toContain('mTLS');
    expect(api.app.output()).toContain('mTLS');
    expect(worker.app.output() + api.app.output()).not.toContain('PRIVATE KEY');

    const org = await createOrgWithMembers(admin, ['owner']);
    const agentId = await createAgent(admin, org.orgId);
    const token = await signUserToken(org.userWithRole('owner'));
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const res = await fetch(`${api.base}/v1/orgs/${org.orgId}/agents/${agentId}/runs`, { method: 'POST', headers, body: JSON.stringify({ input: 'Qualify this lead' }) });
    expect(res.status).toBe(201);
    const { id: runId, workflowId } = (await res.json()) as { id: string; workflowId: string };

    const deadline = Date.now() + 60_000;
    let run: { status?: string; output?: unknown } = {};
    while (run.status !== 'completed' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      run = (await (await fetch(`${api.base}/v1/orgs/${org.orgId}/runs/${runId}`, { headers })).json()) as typeof run;
    }
    expect(run.status, `worker output:\n${worker.app.output()}`).toBe('completed');
    expect(JSON.stringify(run.output)).toContain('Qualified over mutual TLS.');

    const replay = runScript('scripts/replay.ts', ['--query', `WorkflowId = "${workflowId}"`], tlsEnv);
    expect(replay.status, `${replay.stdout}\n${replay.stderr}`).toBe(0);
    expect(replay.stdout).toContain(`✔ deterministic   agentRun ${workflowId}`);
    expect(replay.stdout).toContain('all 1 replayed deterministically');

    expect(await worker.app.stop()).toBe(0);
    expect(await api.app.stop()).toBe(0);
  }, 300_000);

  it('a client certificate from another CA keeps the API and the worker unready, saying why', async () => {
    const stranger = { TEMPORAL_TLS_CERT: certs('stranger.crt'), TEMPORAL_TLS_KEY: certs('stranger.key') };
    const worker = await startWorker(stranger);
    const api = await startApi(stranger);

    const why = 'did not accept our client certificate (TEMPORAL_TLS_CERT is not signed by a CA it trusts)';
    const apiAnswer = await waitForProbe(`${api.base}/readyz`, api.app, (p) => p.status === 503 && p.body.checks?.temporal !== undefined);
    expect(apiAnswer.body.checks?.postgres).toBe('ok');
    expect(apiAnswer.body.checks?.temporal).toMatch(/^unreachable: /);
    expect(apiAnswer.body.checks?.temporal).toContain(why);
    const workerAnswer = await waitForProbe(worker.readyz, worker.app, (p) => p.status === 503 && /cannot connect/.test(p.body.checks?.temporal ?? ''));
    expect(workerAnswer.body.checks).toMatchObject({ postgres: 'ok', polling: 'not started' });
    expect(workerAnswer.body.checks?.temporal).toContain(why);
    // The logs say it too, where an operator looks first.
    expect(worker.app.output()).toContain('cannot connect to Temporal');
    expect(worker.app.output()).toContain(why);
    expect(api.app.output()).toContain(why);

    // Still unready a while later: nothing turns a refused certificate green.
    await new Promise((r) => setTimeout(r, 2_000));
    expect((await probe(`${api.base}/readyz`))?.status).toBe(503);
    expect((await probe(worker.readyz))?.status).toBe(503);

    // Both leave promptly and cleanly when told to, though they never reached Temporal.
    expect(await worker.app.stop()).toBe(0);
    expect(await api.app.stop()).toBe(0);
  }, 180_000);
});
