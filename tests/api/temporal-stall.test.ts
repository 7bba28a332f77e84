import { randomUUID } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Client, Connection } from '@temporalio/client';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { createRunDispatcher } from '../../api/services/run-dispatch.js';
import { startAgentTestStack, type AgentTestStack } from '../support/agent-stack.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { appPool, createAgent, createOrgWithMembers, createRun } from '../support/db.js';
import { testDataConverter, testLogger } from '../support/temporal.js';

const PROBLEM = 'https://gpt-agent-platform.dev/problems/';
// Long enough that 20 reads fit inside the stall on a loaded 2-core machine (they take ~1 s there),
// short enough that reads queued behind held connections (the failure) would visibly wait it out.
const DEADLINE_MS = 6_000;
const POOL_MAX = 4;

/** A Temporal frontend that has stopped answering: it accepts TCP connections and never writes a byte. */
async function startStalledFrontend(): Promise<{ address: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

describe('the API while the Temporal frontend is stalled', () => {
  let stack: AgentTestStack;
  let stalled: Awaited<ReturnType<typeof startStalledFrontend>>;
  let stalledConnection: Connection;
  let pool: pg.Pool;
  let app: App;
  let orgId: string;
  let agentId: string;
  let token: string;

  beforeAll(async () => {
    // A worker on a healthy connection, for the runs the reconciliation starts.
    stack = await startAgentTestStack('temporal-stall');
    stalled = await startStalledFrontend();
    stalledConnection = Connection.lazy({ address: stalled.address });
    pool = appPool({ max: POOL_MAX });
    app = await buildApp({
      pool,
      temporal: new Client({ connection: stalledConnection, namespace: stack.temporal.namespace, dataConverter: testDataConverter }),
      logger: testLogger,
      auth: { jwtSecret: TEST_JWT_SECRET },
      agentRunsTaskQueue: stack.taskQueue,
      temporalDeadlineMs: DEADLINE_MS,
    });
    const org = await createOrgWithMembers(stack.admin, ['owner']);
    orgId = org.orgId;
    agentId = await createAgent(stack.admin, orgId, { model: 'test/model' });
    for (let i = 0; i < 5; i++) await createRun(stack.admin, orgId, agentId);
    token = await signUserToken(org.userWithRole('owner'));
  });

  afterAll(async () => {
    await app?.close();
    await pool?.end();
    await stalledConnection?.close();
    await stalled?.close();
    await stack?.close();
  });

  const auth = () => ({ authorization: `Bearer ${token}` });
  const start = (input: string, key?: string) =>
    app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/agents/${agentId}/runs`, headers: { ...auth(), ...(key ? { 'idempotency-key': key } : {}) }, payload: { input } });

  /** 20 concurrent reads of runs and agents; each read's latency in ms and when the last one ended. */
  async function twentyReads(): Promise<{ latencies: number[]; endedAt: number }> {
    const latencies = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const t0 = performance.now();
        const res = await app.inject({ method: 'GET', url: i % 2 === 0 ? `/v1/orgs/${orgId}/runs?limit=10` : `/v1/orgs/${orgId}/agents`, headers: auth() });
        expect(res.statusCode).toBe(200);
        return performance.now() - t0;
      }),
    );
    return { latencies, endedAt: performance.now() };
  }

  it('answers 20 concurrent reads while starts wait for Temporal, holds no connection for them, and answers the starts 503', async () => {
    const baseline = await twentyReads();

    const inputs = Array.from({ length: POOL_MAX * 2 }, (_, i) => `stalled start ${i} ${randomUUID()}`);
    const startedAt = performance.now();
    const starts = inputs.map((input) => start(input).then((res) => ({ res, settledAt: performance.now() })));
    // Every start has committed its row and now waits on Temporal alone.
    for (;;) {
      const { rows } = await stack.admin.query(`select count(*)::int as n from public.agent_runs where org_id = $1 and input = any($2)`, [orgId, inputs]);
      if (rows[0].n === inputs.length) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    // While they wait, nothing of the pool is theirs: no connection checked out, nobody queued for one.
    let maxCheckedOut = 0;
    let maxWaiting = 0;
    const sampler = setInterval(() => {
      maxCheckedOut = Math.max(maxCheckedOut, pool.totalCount - pool.idleCount);
      maxWaiting = Math.max(maxWaiting, pool.waitingCount);
    }, 5);
    await new Promise((r) => setTimeout(r, 300));
    clearInterval(sampler);

    const stalledReads = await twentyReads();
    const answered = await Promise.all(starts);

    console.log(
      `reads: median ${median(baseline.latencies).toFixed(1)} ms without the stall, ${median(stalledReads.latencies).toFixed(1)} ms with ${inputs.length} starts stalled; ` +
        `starts answered after ${median(answered.map((a) => a.settledAt - startedAt)).toFixed(0)} ms (deadline ${DEADLINE_MS} ms)`,
    );
    // The starts held no connection while they waited: the reads had the whole pool.
    expect(maxCheckedOut).toBe(0);
    expect(maxWaiting).toBe(0);
    // Every read answered while the starts were still waiting for Temporal.
    for (const a of answered) expect(stalledReads.endedAt).toBeLessThan(a.settledAt);
    for (const { res } of answered) {
      expect(res.statusCode).toBe(503);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json()).toMatchObject({ type: `${PROBLEM}service-unavailable`, status: 503 });
    }
    // Fast: the deadline, not the client's default of tens of seconds.
    for (const a of answered) expect(a.settledAt - startedAt).toBeLessThan(DEADLINE_MS + 5_000);
  });

  it('ends consistent after a start Temporal never confirmed: the sweep starts the workflow and the run completes once', async () => {
    const key = `stalled-${randomUUID()}`;
    const res = await start('Qualify this lead once Temporal is back', key);
    expect(res.statusCode).toBe(503);
    const { rows } = await stack.admin.query<{ id: string; status: string; dispatched_at: Date | null }>(
      `select id, status, dispatched_at from public.agent_runs where org_id = $1 and idempotency_key = $2`,
      [orgId, key],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'queued', dispatched_at: null });
    const runId = rows[0]!.id;

    // Temporal is back (a dispatcher on the healthy connection): one sweep of this org.
    const dispatcher = createRunDispatcher({ pool: stack.pool, temporal: stack.temporal.client, taskQueue: stack.taskQueue });
    const sweep = await dispatcher.dispatchPending({ orgId, graceSeconds: 0 });
    expect(sweep.failed).toEqual([]);
    expect(sweep.dispatched).toContain(runId);
    // A second sweep finds nothing left to do.
    expect((await dispatcher.dispatchPending({ orgId, graceSeconds: 0, leaseSeconds: 0 })).dispatched).toEqual([]);

    const result = await stack.temporal.client.workflow.getHandle(`agent-run:${runId}`).result();
    expect(result).toMatchObject({ status: 'completed' });
    const after = await stack.admin.query(`select status, dispatched_at from public.agent_runs where id = $1`, [runId]);
    expect(after.rows[0].status).toBe('completed');
    expect(after.rows[0].dispatched_at).not.toBeNull();
    const executions = [];
    for await (const e of stack.temporal.client.workflow.list({ query: `WorkflowId = 'agent-run:${runId}'` })) executions.push(e);
    expect(executions).toHaveLength(1);
  });

  it('ends consistent after a crash between Temporal accepting the start and the row recording it: no second execution', async () => {
    const runId = await createRun(stack.admin, orgId, agentId, { input: 'Crashed after the start' });
    await stack.admin.query(`update public.agent_runs set dispatched_at = null where id = $1`, [runId]);
    // The process died right after Temporal accepted the start: the workflow runs, the row says undispatched.
    const first = await stack.temporal.client.workflow.start('agentRun', {
      taskQueue: stack.taskQueue,
      workflowId: `agent-run:${runId}`,
      args: [{ orgId, agentId, runId }],
    });

    const dispatcher = createRunDispatcher({ pool: stack.pool, temporal: stack.temporal.client, taskQueue: stack.taskQueue });
    const sweep = await dispatcher.dispatchPending({ orgId, graceSeconds: 0 });
    expect(sweep.dispatched).toContain(runId);

    await first.result();
    const executions = [];
    for await (const e of stack.temporal.client.workflow.list({ query: `WorkflowId = 'agent-run:${runId}'` })) executions.push(e.runId);
    expect(executions).toEqual([first.firstExecutionRunId]);
    const after = await stack.admin.query(`select status, dispatched_at from public.agent_runs where id = $1`, [runId]);
    expect(after.rows[0].status).toBe('completed');
    expect(after.rows[0].dispatched_at).not.toBeNull();
  });

  it('lets a client retry with the same Idempotency-Key once Temporal answers, starting the recorded run', async () => {
    const key = `retry-${randomUUID()}`;
    expect((await start('Retried after a 503', key)).statusCode).toBe(503);
    const healthy = await buildApp({ pool: stack.pool, temporal: stack.temporal.client, logger: testLogger, auth: { jwtSecret: TEST_JWT_SECRET }, agentRunsTaskQueue: stack.taskQueue });
    try {
      const retried = await healthy.inject({ method: 'POST', url: `/v1/orgs/${orgId}/agents/${agentId}/runs`, headers: { ...auth(), 'idempotency-key': key }, payload: { input: 'Retried after a 503' } });
      expect(retried.statusCode).toBe(200);
      const result = await stack.temporal.client.workflow.getHandle(retried.json().workflowId).result();
      expect(result).toMatchObject({ status: 'completed' });
    } finally {
      await healthy.close();
    }
  });
});
