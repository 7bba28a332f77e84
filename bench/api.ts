/**
 * `npm run bench:api`: the API's start-run and get-run under autocannon, against the raw Temporal
 * client starting the same workflow from the same process. Starts its own Temporal dev server
 * and embedded Postgres like the tests do. No worker polls the queue: a start is measured up to
 * the workflow being durably started, which is what the API answers after. Prints; asserts
 * nothing. BENCH_SECONDS (default 10, per side and round), BENCH_CONNECTIONS (default 20) and
 * BENCH_ROUNDS (default 5; the median ratio is the result) scale it.
 */
import path from 'node:path';
import { startSuiteStack } from '../scripts/stack/suite-stack.js';
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import autocannon from 'autocannon';
import { SignJWT } from 'jose';
import { buildApp } from '../api/app.js';
import { createPool, withServiceRole } from '../lib/db.js';
import { createLogger } from '../lib/logger.js';
import { createDataConverter } from '../lib/temporal-codec.js';
import { AgentIdSearchAttribute, OrgIdSearchAttribute } from '../workflows/search-attributes.js';
import { agentRunWorkflowId } from '../workflows/task-queues.js';
import { agentRun } from '../workflows/agent-run/index.js';
import { FigureLog, ROUNDS, summarize, percentile } from './support/figures.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 20);
const WARM_UP_SECONDS = 5;
const JWT_SECRET = 'bench-only-jwt-secret-0123456789abcdef-0123';
const log = (msg: string) => console.log(`[bench:api] ${msg}`);

async function main() {
  const stack = await startSuiteStack({ name: 'bench_api', postgresDataDir: path.join(import.meta.dirname, '..', '.data', 'bench-api-postgres'), log });
  const { temporal: temporalServer, adminUrl, appUrl } = stack;
  const admin = createPool(adminUrl, { max: 4 });
  const pool = createPool(appUrl, { max: 40, applicationName: 'bench-api' });
  const connection = await Connection.connect({ address: temporalServer.address });
  const client = new Client({ connection, namespace: temporalServer.namespace, dataConverter: createDataConverter(undefined) });
  const taskQueue = `bench-api-${randomUUID()}`;

  const orgId = randomUUID();
  const userId = randomUUID();
  const agentId = randomUUID();
  await withServiceRole(admin, async (tx) => {
    await tx.query(`insert into public.organizations (id, name) values ($1, 'Bench org')`, [orgId]);
    await tx.query(`insert into public.organization_members (org_id, user_id, role) values ($1, $2, 'owner')`, [orgId, userId]);
    await tx.query(`insert into public.agents (id, org_id, name, model) values ($1, $2, 'Bench', 'sandbox/bench')`, [agentId, orgId]);
  });

  const app = await buildApp({
    pool,
    temporal: client,
    logger: createLogger({ name: 'bench-api', level: 'silent' }),
    auth: { jwtSecret: JWT_SECRET },
    agentRunsTaskQueue: taskQueue,
    rateLimits: { perOrg: 1e9, perApiKey: 1e9, perUser: 1e9, perIp: 1e9, windowMs: 60_000 },
  });
  const baseUrl = await app.listen({ host: '127.0.0.1', port: 0 });
  const token = await new SignJWT({ role: 'authenticated' })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(userId)
    .setAudience('authenticated')
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(JWT_SECRET));
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };

  const cannon = async (label: string, opts: { method: 'GET' | 'POST'; url: string; body?: string }) => {
    const result = await autocannon({ url: opts.url, method: opts.method, headers, ...(opts.body ? { body: opts.body } : {}), connections: CONNECTIONS, duration: SECONDS });
    const non2xx = result.non2xx + result.errors;
    log(`${label}: p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, ${result.requests.average.toFixed(0)} req/s (${result.requests.total} requests, ${non2xx} failed)`);
    return result;
  };

  // Warm-up at full concurrency, not measured: the first seconds of either side run colder code
  // (JIT, pools, gRPC channels), which showed up as a first round 20 % slower than the next.
  await autocannon({ url: `${baseUrl}/v1/orgs/${orgId}/agents/${agentId}/runs`, method: 'POST', headers, body: JSON.stringify({ input: 'warm-up' }), connections: CONNECTIONS, duration: WARM_UP_SECONDS });

  // Start-run and the raw client alternate, ROUNDS times: the dev server's own load drifts over a
  // run (raw start p50 moved between 100 and 160 ms from one run to the next), and measuring the
  // two sides back to back in each round keeps that drift out of the ratio.
  const rawStarts = async (seconds = SECONDS): Promise<number[]> => {
    const latencies: number[] = [];
    const deadline = performance.now() + seconds * 1000;
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        while (performance.now() < deadline) {
          const runId = randomUUID();
          const t0 = performance.now();
          // The options the API's start sends (api/services/runs.ts), so the ratio is the API's
          // own cost and not a difference in what the server is asked to store.
          await client.workflow.start(agentRun, {
            taskQueue,
            workflowId: agentRunWorkflowId(runId),
            args: [{ orgId, agentId, runId }],
            workflowIdConflictPolicy: 'USE_EXISTING',
            workflowIdReusePolicy: 'REJECT_DUPLICATE',
            typedSearchAttributes: [
              { key: OrgIdSearchAttribute, value: orgId },
              { key: AgentIdSearchAttribute, value: agentId },
            ],
            staticSummary: `Agent run ${runId} of agent ${agentId}`,
          });
          latencies.push(performance.now() - t0);
        }
      }),
    );
    return latencies;
  };
  await rawStarts(WARM_UP_SECONDS);
  const figures = new FigureLog('api');
  const apiP50 = figures.add('start-api', 'API start-run p50 (POST …/runs)', 'ms');
  const rawP50s = figures.add('start-raw', 'raw Temporal client start p50', 'ms');
  figures.ratio('start-ratio', 'API start-run / raw start, p50', 'start-api', 'start-raw', { op: '<=', value: 1.3 });
  const apiRate = figures.add('start-api-rate', 'API start-run throughput', 'req/s');
  const rawRate = figures.add('start-raw-rate', 'raw Temporal client starts', 'starts/s');
  for (let round = 1; round <= ROUNDS; round++) {
    const api = await cannon(`round ${round}: API start-run (POST /v1/orgs/:orgId/agents/:agentId/runs)`, {
      method: 'POST',
      url: `${baseUrl}/v1/orgs/${orgId}/agents/${agentId}/runs`,
      body: JSON.stringify({ input: 'What does Pro cost?' }),
    });
    // The raw client: the same workflow, the same arguments, the same concurrency and duration.
    const latencies = await rawStarts();
    const rawP50 = percentile(latencies, 50);
    log(`round ${round}: raw Temporal client start: p50 ${rawP50.toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms, ${(latencies.length / SECONDS).toFixed(0)} starts/s`);
    apiP50.sample(api.latency.p50);
    rawP50s.sample(rawP50);
    apiRate.sample(api.requests.average);
    rawRate.sample(latencies.length / SECONDS);
  }
  const { rows } = await admin.query<{ id: string }>(`select id from public.agent_runs where org_id = $1 limit 1`, [orgId]);
  const getRun = await cannon('API get-run (GET /v1/orgs/:orgId/runs/:runId)', { method: 'GET', url: `${baseUrl}/v1/orgs/${orgId}/runs/${rows[0]!.id}` });
  figures.add('get-run-p50', 'API get-run p50 (GET …/runs/:runId)', 'ms').sample(getRun.latency.p50);
  figures.add('get-run-rate', 'API get-run throughput', 'req/s').sample(getRun.requests.average);
  const ratios = figures.finish().find((f) => f.id === 'start-ratio')!.samples;
  log(`ratio API start-run / raw start at p50, per round: ${ratios.map((r) => `${r.toFixed(2)}×`).join(', ')}; median ${summarize(ratios).median.toFixed(2)}× (goal ≤ 1.3×)`);

  await app.close();
  await connection.close();
  await pool.end();
  await admin.end();
  await stack.stop();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
