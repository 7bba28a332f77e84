/**
 * Log canaries: secrets that pass through authentication (JWTs, API keys, cookies, query
 * tokens), through activities (the LLM key, echoed back by the provider in an error) and
 * through errors never appear in any log line of the API or the worker, at debug level; and
 * every log line an activity of a run writes names the run's org, run and workflow.
 */
import { Writable } from 'node:stream';
import { WorkflowFailedError } from '@temporalio/client';
import type { Worker } from '@temporalio/worker';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { LlmClient } from '../../integrations/llm/chat-completions.js';
import { createLogger } from '../../lib/logger.js';
import { createAgentRunsWorker } from '../../workers/agent-runs-worker.js';
import { runtimeLogger } from '../../workers/telemetry.js';
import { agentRunWorkflowId } from '../../workflows/task-queues.js';
import { startFakeLlm, type FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { adminPool, appPool, createAgent, createOrgWithMembers, createRun } from '../support/db.js';
import { connectTestTemporal, testDataConverter, uniqueTaskQueue, type TestTemporal } from '../support/temporal.js';

const CANARIES = {
  llmKey: 'sk-or-v1-CANARYLLMKEY00112233445566',
  forgedJwt: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJDQU5BUlkifQ.CANARYSIGNATURE0123',
  apiKey: 'gap_CANARYAPIKEY00112233445566',
  cookie: 'CANARY-COOKIE-SESSION-0011',
  queryToken: 'CANARY-QUERY-TOKEN-0011',
};

function captureLogs() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, stream };
}

describe('log lines', () => {
  const captured = captureLogs();
  const logger = createLogger({ name: 'logs-test', level: 'debug', destination: captured.stream });
  let temporal: TestTemporal;
  let llm: FakeLlmServer;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let worker: Worker;
  let running: Promise<void>;
  let app: App;
  const taskQueue = uniqueTaskQueue('logs');

  beforeAll(async () => {
    // The worker process's wiring (workers/main.ts): SDK logs through pino.
    temporal = await connectTestTemporal({ logger: runtimeLogger(logger, 'DEBUG') });
    llm = await startFakeLlm();
    pool = appPool();
    admin = adminPool();
    worker = await createAgentRunsWorker({
      connection: temporal.nativeConnection,
      namespace: temporal.namespace,
      pool,
      llm: new LlmClient({ baseUrl: llm.url, apiKey: CANARIES.llmKey, timeoutMs: 10_000 }),
      logger,
      taskQueue,
      workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
      shutdownGraceTime: '2 seconds',
      heartbeatIntervalMs: 1_000,
      dataConverter: testDataConverter,
    });
    running = worker.run();
    app = await buildApp({ pool, temporal: temporal.client, logger, auth: { jwtSecret: TEST_JWT_SECRET }, agentRunsTaskQueue: taskQueue });
  });

  afterAll(async () => {
    worker?.shutdown();
    await running;
    await app?.close();
    await llm?.close();
    await temporal?.close();
    await pool?.end();
    await admin?.end();
  });

  async function run(orgId: string, agentId: string) {
    const runId = await createRun(admin, orgId, agentId, { input: 'hello' });
    const workflowId = agentRunWorkflowId(runId);
    const outcome = await temporal.client.workflow
      .execute('agentRun', { taskQueue, workflowId, args: [{ orgId, agentId, runId }] })
      .then(() => 'completed', (err: unknown) => err);
    return { runId, workflowId, outcome };
  }

  it('never contain a secret from auth headers, query strings, activities or errors', async () => {
    const { orgId, userWithRole } = await createOrgWithMembers(admin, ['owner']);
    const agentId = await createAgent(admin, orgId, { model: 'openai/gpt-4o-mini' });
    const validJwt = await signUserToken(userWithRole('owner'));
    const base = `/v1/orgs/${orgId}/runs`;

    const answers = await Promise.all([
      app.inject({ method: 'GET', url: base, headers: { authorization: `Bearer ${CANARIES.forgedJwt}` } }),
      app.inject({ method: 'GET', url: base, headers: { 'x-api-key': CANARIES.apiKey } }),
      app.inject({ method: 'GET', url: base, headers: { authorization: `Bearer ${CANARIES.apiKey}` } }),
      app.inject({ method: 'GET', url: `${base}?access_token=${CANARIES.queryToken}`, headers: { cookie: `sb-access-token=${CANARIES.cookie}` } }),
      app.inject({ method: 'GET', url: base, headers: { authorization: `Bearer ${validJwt}` } }),
    ]);
    expect(answers.slice(0, 4).map((a) => a.statusCode).every((s) => s === 401)).toBe(true);
    expect(answers[4]!.statusCode).toBe(200);

    // An activity whose secret (the LLM key) goes out in a header, and comes back quoted in the
    // provider's error, which the activity turns into a failure the SDK logs.
    llm.enqueue({ kind: 'error', status: 401, message: `Incorrect API key provided: ${CANARIES.llmKey}` });
    const failed = await run(orgId, agentId);
    expect(failed.outcome).toBeInstanceOf(WorkflowFailedError);
    expect(llm.requests.at(-1)!.headers.authorization).toBe(`Bearer ${CANARIES.llmKey}`);

    expect(captured.lines.length).toBeGreaterThan(10);
    const leaks = captured.lines.filter((line) => [...Object.values(CANARIES), validJwt].some((canary) => line.includes(canary)));
    expect(leaks).toEqual([]);
  });

  it("carry the run's org, run and workflow id on every line its activities write", async () => {
    const { orgId } = await createOrgWithMembers(admin, ['owner']);
    const agentId = await createAgent(admin, orgId, { model: 'openai/gpt-4o-mini' });
    llm.enqueue({ kind: 'text', content: 'Hello' });
    const before = captured.lines.length;
    const { runId, workflowId, outcome } = await run(orgId, agentId);
    expect(outcome).toBe('completed');

    const activityLines = captured.lines
      .slice(before)
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((entry) => entry.activityType !== undefined && entry.workflowId === workflowId);
    // At least the SDK's start/complete lines and the activity's own "LLM step recorded".
    expect(activityLines.length).toBeGreaterThanOrEqual(3);
    expect(activityLines.some((entry) => entry.msg === 'LLM step recorded')).toBe(true);
    // One exception: the SDK logs "Activity started" (debug level, so absent at the production
    // level of info) before any interceptor sees the activity's arguments; it still names the
    // workflow id, which is the run's business key (agent-run:<runId>).
    const startLines = activityLines.filter((entry) => entry.msg === 'Activity started');
    for (const entry of startLines) expect(entry).toMatchObject({ level: 20, workflowId });
    for (const entry of activityLines.filter((e) => e.msg !== 'Activity started')) {
      expect(entry, String(entry.msg)).toMatchObject({ orgId, agentRunId: runId, workflowId });
    }
  });
});
