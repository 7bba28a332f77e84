import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import type { FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { startAgentTestStack, type AgentTestStack } from '../support/agent-stack.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { createAgent, createOrgWithMembers, createRun } from '../support/db.js';
import { AgentIdSearchAttribute, OrgIdSearchAttribute } from '../../workflows/search-attributes.js';
import { testLogger, type TestTemporal } from '../support/temporal.js';

const PROBLEM = 'https://gpt-agent-platform.dev/problems/';

describe('runs API, end to end (app + worker + Temporal + Postgres)', () => {
  let stack: AgentTestStack;
  let temporal: TestTemporal;
  let llm: FakeLlmServer;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let taskQueue: string;
  let app: App;

  let orgA: string;
  let ownerA: string;
  let agentA: string;
  let orgB: string;
  let memberB: string;
  let tokenA: string;
  let tokenB: string;

  beforeAll(async () => {
    stack = await startAgentTestStack('api-runs-test');
    ({ temporal, llm, pool, admin, taskQueue } = stack);
    app = await buildApp({ pool, temporal: temporal.client, logger: testLogger, auth: { jwtSecret: TEST_JWT_SECRET }, agentRunsTaskQueue: taskQueue });

    const a = await createOrgWithMembers(admin, ['owner']);
    orgA = a.orgId;
    ownerA = a.userWithRole('owner');
    agentA = await createAgent(admin, orgA, { model: 'test/model' });
    const b = await createOrgWithMembers(admin, ['member']);
    orgB = b.orgId;
    memberB = b.userWithRole('member');
    tokenA = await signUserToken(ownerA);
    tokenB = await signUserToken(memberB);
  });

  afterAll(async () => {
    await app?.close();
    await stack?.close();
  });

  const startRun = (opts: { token?: string; org?: string; agent?: string; body?: unknown; key?: string } = {}) =>
    app.inject({
      method: 'POST',
      url: `/v1/orgs/${opts.org ?? orgA}/agents/${opts.agent ?? agentA}/runs`,
      headers: {
        authorization: `Bearer ${opts.token ?? tokenA}`,
        ...(opts.key ? { 'idempotency-key': opts.key } : {}),
      },
      payload: (opts.body ?? { input: 'Qualify this lead' }) as Record<string, unknown>,
    });

  const getRun = (runId: string, opts: { token?: string; org?: string } = {}) =>
    app.inject({ method: 'GET', url: `/v1/orgs/${opts.org ?? orgA}/runs/${runId}`, headers: { authorization: `Bearer ${opts.token ?? tokenA}` } });

  async function waitForStatus(runId: string, status: string) {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const res = await getRun(runId);
      const run = res.json();
      if (run.status === status) return run;
      if (Date.now() > deadline) throw new Error(`run ${runId} is ${run.status}, expected ${status}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it('starts a run, which completes with the output stored and reported', async () => {
    llm.enqueue({ kind: 'text', content: 'The lead looks qualified.', usage: { inputTokens: 30, outputTokens: 6 } });

    const res = await startRun();

    expect(res.statusCode).toBe(201);
    const started = res.json();
    expect(started).toEqual({ id: expect.any(String), status: 'queued', workflowId: `agent-run:${started.id}` });
    expect(res.headers.location).toBe(`/v1/orgs/${orgA}/runs/${started.id}`);

    const run = await waitForStatus(started.id, 'completed');
    expect(run).toMatchObject({
      id: started.id,
      orgId: orgA,
      agentId: agentA,
      output: 'The lead looks qualified.',
      error: null,
      usage: { inputTokens: 30, outputTokens: 6 },
    });
    expect(run.completedAt).not.toBeNull();

    const { rows } = await admin.query(`select output, created_by from public.agent_runs where id = $1`, [started.id]);
    expect(rows[0]).toEqual({ output: 'The lead looks qualified.', created_by: ownerA });

    const description = await temporal.client.workflow.getHandle(started.workflowId).describe();
    expect(description.typedSearchAttributes.get(OrgIdSearchAttribute)).toBe(orgA);
    expect(description.typedSearchAttributes.get(AgentIdSearchAttribute)).toBe(agentA);
  });

  it('answers the same run for the same Idempotency-Key, with one row and one workflow', async () => {
    const key = `retry-${randomUUID()}`;

    const first = await startRun({ key });
    const second = await startRun({ key });

    expect(first.statusCode).toBe(201);
    expect(second.statusCode).toBe(200);
    expect(second.json().id).toBe(first.json().id);
    const { rows } = await admin.query(`select count(*)::int as n from public.agent_runs where org_id = $1 and idempotency_key = $2`, [orgA, key]);
    expect(rows[0].n).toBe(1);
    await waitForStatus(first.json().id, 'completed');
    const executions = [];
    for await (const execution of temporal.client.workflow.list({ query: `WorkflowId = '${first.json().workflowId}'` })) executions.push(execution);
    expect(executions).toHaveLength(1);
  });

  it('refuses to reuse an Idempotency-Key for a different request', async () => {
    const key = `reuse-${randomUUID()}`;
    expect((await startRun({ key, body: { input: 'one' } })).statusCode).toBe(201);

    const res = await startRun({ key, body: { input: 'two' } });

    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ type: `${PROBLEM}conflict`, status: 409 });
  });

  it("answers 404 for another organization's run and agent, and leaks nothing", async () => {
    const runId = await createRun(admin, orgA, agentA, { input: 'private to org A' });

    for (const res of [await getRun(runId, { token: tokenB }), await getRun(runId, { token: tokenB, org: orgB }), await startRun({ token: tokenB })]) {
      expect(res.statusCode).toBe(404);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json().type).toBe(`${PROBLEM}not-found`);
      expect(res.body).not.toContain('private to org A');
    }
    const { rows } = await admin.query(`select count(*)::int as n from public.agent_runs where org_id = $1 and created_by = $2`, [orgA, memberB]);
    expect(rows[0].n).toBe(0);
  });

  it('rejects missing, expired, wrongly signed, wrong-audience and unsigned tokens with 401', async () => {
    const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
    const payload = Buffer.from(JSON.stringify({ sub: ownerA, aud: 'authenticated', exp: Math.floor(Date.now() / 1000) + 3600 })).toString('base64url');
    const cases: Record<string, string | undefined> = {
      missing: undefined,
      expired: await signUserToken(ownerA, { expiresIn: Math.floor(Date.now() / 1000) - 60 }),
      wrongSecret: await signUserToken(ownerA, { secret: 'another-secret-another-secret-another-secret' }),
      wrongAudience: await signUserToken(ownerA, { audience: 'anon' }),
      algNone: `${header}.${payload}.`,
      notBearer: 'garbage',
    };
    for (const [name, token] of Object.entries(cases)) {
      const res = await app.inject({
        method: 'GET',
        url: `/v1/orgs/${orgA}/runs/${randomUUID()}`,
        headers: token === undefined ? {} : { authorization: name === 'notBearer' ? token : `Bearer ${token}` },
      });
      expect(res.statusCode, name).toBe(401);
      expect(res.json(), name).toMatchObject({ type: `${PROBLEM}unauthenticated`, status: 401 });
    }
  });

  it('rejects unknown body fields and bad input as validation problems', async () => {
    const unknownField = await startRun({ body: { input: 'hi', org_id: orgB } });
    expect(unknownField.statusCode).toBe(400);
    expect(unknownField.headers['content-type']).toContain('application/problem+json');
    expect(unknownField.json()).toMatchObject({ type: `${PROBLEM}validation-error`, status: 400 });

    expect((await startRun({ body: { input: '' } })).statusCode).toBe(400);
    expect((await startRun({ body: {} })).statusCode).toBe(400);
    expect((await startRun({ agent: 'not-a-uuid' })).statusCode).toBe(400);
  });

  it('reports liveness and readiness', async () => {
    expect((await app.inject({ method: 'GET', url: '/healthz' })).json()).toEqual({ status: 'ok' });
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ status: 'ok', checks: { postgres: 'ok', temporal: 'ok' } });
  });
});
