import type { Worker } from '@temporalio/worker';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { flushSentry, initSentry, scrubString } from '../../lib/sentry.js';
import { startFakeLlm, type FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { startFakeSentryIngest, type FakeSentryIngest } from '../fakes/sentry-ingest.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { adminPool, appPool, createAgent, createOrgWithMembers, createRun } from '../support/db.js';
import { agentRunWorkflowId } from '../../workflows/task-queues.js';
import { connectTestTemporal, testLogger, uniqueTaskQueue, type TestTemporal } from '../support/temporal.js';
import { startWorkers } from '../replay/scenarios/agent-run.js';

const CANARIES = {
  providerKey: 'sk-or-v1-CANARYPROVIDERKEY0123456789',
  dbPassword: 'CANARY-DB-PASSWORD-42',
  bearer: 'CANARY-BEARER-TOKEN-0123456789',
  apiKeyHeader: 'gap_CANARYORGAPIKEY0123456789',
};

describe('scrubString', () => {
  it('masks bearer tokens, JWTs, provider keys, key=value secrets and URL credentials', () => {
    const text =
      `Authorization: Bearer ${CANARIES.bearer}; key ${CANARIES.providerKey}; jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLXZhbHVl; ` +
      `password=${CANARIES.dbPassword} postgres://app:${CANARIES.dbPassword}@db:5432/x client_secret: "abc123456"`;
    const scrubbed = scrubString(text);
    for (const canary of [...Object.values(CANARIES), 'eyJhbGciOiJIUzI1NiJ9', 'abc123456']) expect(scrubbed).not.toContain(canary);
    expect(scrubbed).toContain('Authorization: Bearer [redacted]');
    expect(scrubbed).toContain('postgres://app:[redacted]@db:5432/x');
  });
});

describe('Sentry error reporting (fake ingest endpoint)', () => {
  let ingest: FakeSentryIngest;
  let temporal: TestTemporal;
  let llm: FakeLlmServer;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let workers: Worker[] = [];
  let running: Promise<void>[] = [];
  let app: App;
  const taskQueue = uniqueTaskQueue('sentry');

  beforeAll(async () => {
    ingest = await startFakeSentryIngest();
    expect(initSentry({ SENTRY_DSN: ingest.dsn, SENTRY_ENVIRONMENT: 'test' }, 'worker')).toBe(true);
    temporal = await connectTestTemporal();
    llm = await startFakeLlm();
    pool = appPool();
    admin = adminPool();
    workers = await startWorkers({ temporal, admin, pool, llm, taskQueue });
    running = workers.map((w) => w.run());
    app = await buildApp({ pool, temporal: temporal.client, logger: testLogger, auth: { jwtSecret: TEST_JWT_SECRET }, agentRunsTaskQueue: taskQueue });
    // A route that fails the way a real bug does: an unexpected error whose message quotes a secret.
    app.get('/test-only/boom', { config: { auth: 'none', minRole: null } }, async () => {
      throw new Error(`connect failed: postgres://app:${CANARIES.dbPassword}@db/app (key ${CANARIES.providerKey})`);
    });
    await app.ready();
  });

  afterAll(async () => {
    workers.forEach((w) => w.shutdown());
    await Promise.allSettled(running);
    await app?.close();
    await llm?.close();
    await temporal?.close();
    await pool?.end();
    await admin?.end();
    await ingest?.close();
  });

  it('receives API 5xx, activity and workflow failures as events, none of them carrying a secret', async () => {
    const token = await signUserToken('00000000-0000-4000-8000-0000000000aa');
    const boom = await app.inject({
      method: 'GET',
      url: `/test-only/boom?access_token=${CANARIES.bearer}`,
      headers: { authorization: `Bearer ${token}`, 'x-api-key': CANARIES.apiKeyHeader, cookie: `session=${CANARIES.bearer}` },
    });
    expect(boom.statusCode).toBe(500);
    expect(boom.body).not.toContain(CANARIES.dbPassword);
    // Expected errors are not incidents: a 401 is not reported.
    expect((await app.inject({ method: 'GET', url: '/v1/orgs/00000000-0000-4000-8000-000000000000/runs' })).statusCode).toBe(401);

    // The provider rejects the request quoting our key back (as OpenAI does for a bad key).
    llm.enqueue({ kind: 'error', status: 400, message: `Incorrect API key provided: ${CANARIES.providerKey}` });
    const { orgId } = await createOrgWithMembers(admin, ['owner']);
    const agentId = await createAgent(admin, orgId, { model: 'openai/gpt-4o-mini' });
    const runId = await createRun(admin, orgId, agentId, { input: 'hello' });
    await temporal.client.workflow
      .execute('agentRun', { taskQueue, workflowId: agentRunWorkflowId(runId), args: [{ orgId, agentId, runId }] })
      .catch(() => undefined);

    await flushSentry(5_000);
    const deadline = Date.now() + 10_000;
    const kinds = () => ingest.events().map((e) => ((e.tags ?? {}) as Record<string, string>)['temporal.kind'] ?? 'api');
    while (Date.now() < deadline && !(kinds().includes('activity') && kinds().includes('workflow') && kinds().includes('api'))) {
      await new Promise((r) => setTimeout(r, 100));
      await flushSentry(1_000);
    }

    const events = ingest.events();
    const byKind = (kind: string) => events.filter((e) => (((e.tags ?? {}) as Record<string, string>)['temporal.kind'] ?? 'api') === kind);
    expect(byKind('api')).toHaveLength(1);
    expect(byKind('activity').length).toBeGreaterThanOrEqual(1);
    expect(byKind('workflow')).toHaveLength(1);

    const activity = byKind('activity')[0]!;
    expect(activity.tags).toMatchObject({ 'temporal.activity_type': 'callLlm', 'temporal.workflow_type': 'agentRun', 'failure.type': 'LlmRequestRejected' });
    expect(activity.extra).toMatchObject({ orgId: expect.any(String), agentRunId: expect.any(String) });
    const workflow = byKind('workflow')[0]!;
    expect(workflow.tags).toMatchObject({ 'temporal.workflow_type': 'agentRun' });
    expect(JSON.stringify(workflow.exception)).toContain('Incorrect API key provided');
    const api = byKind('api')[0]!;
    expect(api.tags).toMatchObject({ route: '/test-only/boom', service: 'worker' });

    // Nothing secret anywhere in what left the process: not the key the provider echoed, not the
    // database password in the error, not the headers or query string of the failing request.
    const everything = ingest.envelopes.map((e) => e.raw).join('\n');
    for (const canary of Object.values(CANARIES)) expect(everything).not.toContain(canary);
    expect(everything).not.toContain(token);
  });
});
