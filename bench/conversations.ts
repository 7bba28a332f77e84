/**
 * `npm run bench:conversations` (and part of `npm run bench`): a lead's conversation with the agent
 * inside the CRM, on the real API, workers, Postgres and Temporal dev server, with the sandbox CRM
 * of `npm run dev` (the Kommo fake, in this process) and the sandbox LLM (zero latency, in a child
 * process). Prints; asserts nothing.
 *
 * 1. Webhook intake, BENCH_ROUNDS rounds: BENCH_INTAKE_COUNT (default 500) Kommo `message[add]`
 *    webhooks POSTed to `/v1/webhooks/crm/kommo/:connectionId` (URL secret, as Kommo signs them),
 *    BENCH_INTAKE_CONCURRENCY (default 10) in flight, versus the same count of bare
 *    `signalWithStart` calls of a trivial workflow that ignores the signal (one workflow per
 *    connection, as the intake does; run by a worker in this process, as crmIntake is), sides
 *    alternating in order each round. The intake's connection has no agent bound, so
 *    its deliveries are processed (by the worker in this process) but start no runs.
 * 2. Reply latency, BENCH_ROUNDS rounds: a lead writes BENCH_REPLY_SAMPLES (default 10) messages
 *    in turn through the sandbox (`POST /sandbox/leads/:leadId/messages`), each waiting for the
 *    agent's reply in the thread (`GET …/messages`); the figure is the reply's time in the thread
 *    minus the lead's message's, minus the fake LLM's own time (arrival to answer sent), with a
 *    response delay of zero. The first message of a round opens the conversation, the rest
 *    continue it.
 * 3. Worker RSS with BENCH_CONVERSATIONS (default 1,000) conversations open: one message from each
 *    of as many leads, answered, every run asleep waiting for the lead's next message. The API,
 *    both workers and the sandbox CRM share this process, as the RSS figure says.
 */
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { buildApp } from '../api/app.js';
import { CredentialStore, storeTokens } from '../integrations/crm/credentials.js';
import { RateGovernor } from '../integrations/crm/governor.js';
import type { CrmSettings } from '../integrations/crm/settings.js';
import { LlmClient } from '../integrations/llm/chat-completions.js';
import { generateKeySpec, parseKeyring, sha256Hex } from '../lib/crypto.js';
import { createPool, withServiceRole } from '../lib/db.js';
import { createLogger } from '../lib/logger.js';
import { createDataConverter } from '../lib/temporal-codec.js';
import { kommoChatWebhookBody } from '../scripts/stack/crm-fakes/kommo-talks.js';
import { startSandboxCrm } from '../scripts/stack/sandbox-crm.js';
import { bindSandboxCrm, sandboxWebhookUrl } from '../scripts/stack/sandbox-crm-seed.js';
import { startSuiteStack } from '../scripts/stack/suite-stack.js';
import { createAgentRunsWorker, workflowsPath } from '../workers/agent-runs-worker.js';
import { createCrmSyncWorker } from '../workers/crm-sync-worker.js';
import { createAgentRunHandoff } from '../workers/run-handoff.js';
import { FigureLog, ROUNDS, percentile } from './support/figures.js';
import { benchDeliverySignal, trivialIntake } from './workflows.js';

const INTAKE_COUNT = Number(process.env.BENCH_INTAKE_COUNT ?? 500);
const INTAKE_CONCURRENCY = Number(process.env.BENCH_INTAKE_CONCURRENCY ?? 10);
const REPLY_SAMPLES = Number(process.env.BENCH_REPLY_SAMPLES ?? 10);
const CONVERSATIONS = Number(process.env.BENCH_CONVERSATIONS ?? 1000);
const JWT_SECRET = 'bench-only-jwt-secret-0123456789abcdef-0123';
const log = (msg: string) => console.log(`[bench:conversations] ${msg}`);
const ms = (n: number) => `${n.toFixed(1)} ms`;
const sleep = (msDelay: number) => new Promise((r) => setTimeout(r, msDelay));

const settings: CrmSettings = {
  timeoutMs: 30_000,
  kommo: { authorizeUrl: 'http://127.0.0.1/oauth', accountHostPattern: /^127\.0\.0\.1:\d+$/, scheme: 'http' },
  hubspot: { authorizeUrl: 'http://127.0.0.1/oauth', apiBaseUrl: 'http://127.0.0.1:9' },
  // The sandbox listens on loopback, which the SSRF guard refuses for customer-chosen hosts.
  ssrf: { allowedHosts: ['127.0.0.1'] },
};

/** `count` calls of `call`, `concurrency` in flight: each call's latency and the calls per second. */
async function measure(count: number, concurrency: number, call: (i: number) => Promise<void>): Promise<{ latencies: number[]; perSecond: number }> {
  const latencies: number[] = [];
  let next = 0;
  const began = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < count; i = next++) {
        const t0 = performance.now();
        await call(i);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return { latencies, perSecond: count / ((performance.now() - began) / 1000) };
}

async function main() {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const stack = await startSuiteStack({ name: 'bench_conversations', postgresDataDir: path.join(import.meta.dirname, '..', '.data', 'bench-conversations-postgres'), log });
  const { temporal: temporalServer, adminUrl, appUrl } = stack;
  const admin = createPool(adminUrl, { max: 4 });
  const pool = createPool(appUrl, { max: 40, applicationName: 'bench-conversations' });
  const llm = await startFakeLlmProcess();
  const dataConverter = createDataConverter(undefined);
  const connection = await Connection.connect({ address: temporalServer.address });
  const client = new Client({ connection, namespace: temporalServer.namespace, dataConverter });
  const nativeConnection = await NativeConnection.connect({ address: temporalServer.address });
  const keyring = parseKeyring(generateKeySpec('bench'));
  const logger = createLogger({ name: 'bench', level: 'silent' });
  const governor = new RateGovernor(pool, { budgets: { kommo: { capacity: 100_000, refillPerSecond: 100_000 } } });
  const credentials = new CredentialStore({ pool, keyring, settings, governor });
  const taskQueue = `bench-agent-${randomUUID()}`;
  const crmTaskQueue = `bench-crm-${randomUUID()}`;

  const app = await buildApp({
    pool,
    temporal: client,
    logger,
    auth: { jwtSecret: JWT_SECRET },
    agentRunsTaskQueue: taskQueue,
    crm: { keyring, settings, syncTaskQueue: crmTaskQueue, governor },
    rateLimits: { perOrg: 1e9, perApiKey: 1e9, perUser: 1e9, perIp: 1e9, windowMs: 60_000 },
  });
  const apiUrl = await app.listen({ host: '127.0.0.1', port: 0 });

  log('bundling the workflows once for both workers');
  const { code } = await bundleWorkflowCode({ workflowsPath, logger: new DefaultLogger('ERROR') });
  const agentWorker = await createAgentRunsWorker({
    connection: nativeConnection,
    namespace: temporalServer.namespace,
    pool,
    llm: new LlmClient({ baseUrl: llm.url, timeoutMs: 30_000 }),
    logger,
    taskQueue,
    workflowBundle: { code },
    shutdownGraceTime: '2 seconds',
    dataConverter,
    credentials,
    keyring,
  });
  const crmWorker = await createCrmSyncWorker({
    connection: nativeConnection,
    namespace: temporalServer.namespace,
    pool,
    credentials,
    logger,
    taskQueue: crmTaskQueue,
    workflowBundle: { code },
    shutdownGraceTime: '2 seconds',
    dataConverter,
    handoff: createAgentRunHandoff({ temporal: client, taskQueue }),
  });
  const baselineTaskQueue = `bench-baseline-${randomUUID()}`;
  const baselineWorker = await Worker.create({
    connection: nativeConnection,
    namespace: temporalServer.namespace,
    taskQueue: baselineTaskQueue,
    workflowsPath: fileURLToPath(new URL('./workflows.ts', import.meta.url)),
    dataConverter,
  });
  const running = [agentWorker.run(), crmWorker.run(), baselineWorker.run()];

  // The org, its agent bound to the sandbox (zero response delay), and a second connection to the
  // same sandbox with no agent, whose webhooks the intake figure posts.
  const orgId = randomUUID();
  const agentId = randomUUID();
  await withServiceRole(admin, async (tx) => {
    await tx.query(`insert into public.organizations (id, name) values ($1, 'Bench org')`, [orgId]);
    await tx.query(`insert into public.agents (id, org_id, name, model) values ($1, $2, 'Bench SDR', 'sandbox/echo')`, [agentId, orgId]);
  });
  const accessToken = `bench-${randomUUID()}`;
  const binding = { connectionId: randomUUID(), webhookSecret: `bench-${randomUUID()}` };
  const leadsNeeded = ROUNDS + CONVERSATIONS + 3;
  const sandbox = await startSandboxCrm({ accessToken, webhookUrl: sandboxWebhookUrl(apiUrl, binding), leads: leadsNeeded, monthlySendQuota: 1_000_000, log });
  await bindSandboxCrm(admin, { ...binding, orgId, agentId, sandboxUrl: sandbox.url, accessToken, keyring, responseDelaySeconds: 0 });
  const intakeConnection = { id: randomUUID(), secret: `bench-${randomUUID()}` };
  await withServiceRole(admin, async (tx) => {
    await tx.query(
      `insert into public.crm_connections (id, org_id, provider, name, auth_kind, status, api_base_url, webhook_secret_hash)
       values ($1, $2, 'kommo', 'Intake bench', 'token', 'active', $3, $4)`,
      [intakeConnection.id, orgId, sandbox.url, sha256Hex(intakeConnection.secret)],
    );
    await storeTokens(tx, keyring, { orgId, connectionId: intakeConnection.id }, { accessToken, refreshToken: null, expiresAt: null });
  });
  const leadIds = [...sandbox.kommo.store.table('leads').keys()].sort((a, b) => a - b);
  log(`sandbox CRM on ${sandbox.url} with ${leadIds.length} leads; API on ${apiUrl}`);

  const figures = new FigureLog('conversations');
  const intakeP50 = figures.add('intake-p50', `webhook intake (POST message[add]), p50, ${INTAKE_CONCURRENCY} in flight`, 'ms');
  const intakeP99 = figures.add('intake-p99', 'webhook intake, p99', 'ms');
  const intakeRate = figures.add('intake-rate', 'webhook intake throughput', 'req/s');
  const rawP50 = figures.add('raw-p50', 'raw Temporal signalWithStart, p50', 'ms');
  const rawP99 = figures.add('raw-p99', 'raw Temporal signalWithStart, p99', 'ms');
  const rawRate = figures.add('raw-rate', 'raw Temporal signalWithStart throughput', 'calls/s');
  figures.ratio('intake-p50-ratio', 'webhook intake p50 / raw signalWithStart p50', 'intake-p50', 'raw-p50', { op: '<=', value: 1.3 });
  figures.ratio('intake-p99-ratio', 'webhook intake p99 / raw signalWithStart p99', 'intake-p99', 'raw-p99', { op: '<=', value: 1.3 });
  figures.ratio('intake-rate-ratio', 'raw signalWithStart throughput / webhook intake throughput', 'raw-rate', 'intake-rate', { op: '<=', value: 1.3 });

  // 1. Webhook intake --------------------------------------------------------------------------------
  const intakeTalk = sandbox.kommo.talks.addTalk({ leadId: leadIds[0]!, origin: 'telegram' });
  const intakeUrl = `${apiUrl}/v1/webhooks/crm/kommo/${intakeConnection.id}?secret=${encodeURIComponent(intakeConnection.secret)}`;
  const postWebhook = async () => {
    const body = kommoChatWebhookBody({ leadId: leadIds[0]!, talkId: intakeTalk, text: 'How much is the Pro plan?', authorName: 'Bench lead', accountId: sandbox.kommo.accountId });
    const res = await fetch(intakeUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`the webhook intake answered ${res.status}`);
  };
  // The baseline: what the intake cannot avoid, a signal-with-start of the connection's workflow
  // (a trivial one that ignores the signal, run by a worker in this process like crmIntake).
  const rawWorkflowId = `bench-raw-intake-${randomUUID()}`;
  const rawSignal = async () => {
    await client.workflow.signalWithStart(trivialIntake, {
      taskQueue: baselineTaskQueue,
      workflowId: rawWorkflowId,
      signal: benchDeliverySignal,
      signalArgs: [{ deliveries: 1 }],
    });
  };
  // Warm-up (connections, prepared statements, the intake workflow's first task), not measured.
  await measure(20, INTAKE_CONCURRENCY, postWebhook);
  await measure(20, INTAKE_CONCURRENCY, rawSignal);
  for (let round = 1; round <= ROUNDS; round++) {
    const intakeSide = async () => {
      const m = await measure(INTAKE_COUNT, INTAKE_CONCURRENCY, postWebhook);
      intakeP50.sample(percentile(m.latencies, 50));
      intakeP99.sample(percentile(m.latencies, 99));
      intakeRate.sample(m.perSecond);
      log(`round ${round}: webhook intake ${INTAKE_COUNT} in ${m.perSecond.toFixed(0)} req/s, p50 ${ms(percentile(m.latencies, 50))}, p99 ${ms(percentile(m.latencies, 99))}`);
    };
    const rawSide = async () => {
      const m = await measure(INTAKE_COUNT, INTAKE_CONCURRENCY, rawSignal);
      rawP50.sample(percentile(m.latencies, 50));
      rawP99.sample(percentile(m.latencies, 99));
      rawRate.sample(m.perSecond);
      log(`round ${round}: raw signalWithStart ${INTAKE_COUNT} in ${m.perSecond.toFixed(0)} calls/s, p50 ${ms(percentile(m.latencies, 50))}, p99 ${ms(percentile(m.latencies, 99))}`);
    };
    // The intake goes first in odd rounds and last in even ones, so drift does not favour one side.
    for (const side of round % 2 === 1 ? [intakeSide, rawSide] : [rawSide, intakeSide]) await side();
    // The intake's deliveries are processed by the worker after the 200: let it drain before the
    // next round, so one round's background work is not charged to the next round's other side.
    for (;;) {
      const { rows } = await admin.query<{ n: number }>(`select count(*)::int as n from public.crm_webhook_deliveries where connection_id = $1 and processed_at is null`, [intakeConnection.id]);
      if (rows[0]!.n === 0) break;
      await sleep(250);
    }
  }

  // 2. Reply latency ---------------------------------------------------------------------------------
  const replyP50 = figures.add('reply-p50', `lead message to reply in the thread minus the fake LLM, p50 of ${REPLY_SAMPLES}, zero response delay`, 'ms', { op: '<=', value: 300 });
  const messagesUrl = (leadId: number) => `${sandbox.url}/sandbox/leads/${leadId}/messages`;
  type ThreadMessage = { id: string; direction: 'in' | 'out'; author: string; text: string; createdAt: string };
  const thread = async (leadId: number) => (await (await fetch(messagesUrl(leadId))).json()) as ThreadMessage[];
  for (let round = 1; round <= ROUNDS; round++) {
    const leadId = leadIds[round]!;
    const gaps: number[] = [];
    for (let i = 0; i < REPLY_SAMPLES; i++) {
      const text = `round ${round} message ${i}: do you ship to Berlin? ${randomUUID()}`;
      const before = (await thread(leadId)).length;
      const wrote = await fetch(messagesUrl(leadId), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text }) });
      const written = (await wrote.json()) as ThreadMessage & { webhook: { delivered: boolean } };
      if (wrote.status !== 201 || !written.webhook.delivered) throw new Error(`the sandbox answered ${wrote.status}: ${JSON.stringify(written)}`);
      const deadline = Date.now() + 60_000;
      let reply: ThreadMessage | undefined;
      while (!reply) {
        if (Date.now() > deadline) throw new Error(`no reply to lead ${leadId} within 60 s`);
        await sleep(10);
        reply = (await thread(leadId)).slice(before + 1).find((m) => m.author === 'agent');
      }
      const llmTime = (await llm.requests())
        .filter((r) => r.said.includes(text) && r.doneAt !== null)
        .reduce((sum, r) => sum + (r.doneAt! - r.at), 0);
      gaps.push(Date.parse(reply.createdAt) - Date.parse(written.createdAt) - llmTime);
    }
    replyP50.sample(percentile(gaps, 50));
    log(`round ${round}: lead message to reply minus the fake LLM: p50 ${ms(percentile(gaps, 50))}, max ${ms(Math.max(...gaps))} over ${gaps.length} messages (the first opens the conversation: ${ms(gaps[0]!)})`);
  }

  // 3. RSS with open conversations ------------------------------------------------------------------
  const rssBefore = process.memoryUsage().rss;
  const openLeads = leadIds.slice(ROUNDS + 1, ROUNDS + 1 + CONVERSATIONS);
  const opened = performance.now();
  await measure(openLeads.length, 20, async (i) => {
    const res = await fetch(messagesUrl(openLeads[i]!), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: `hello from lead ${openLeads[i]}` }) });
    await res.arrayBuffer();
  });
  let asleep = 0;
  for (let lastLog = 0; ; ) {
    const { rows } = await admin.query<{ n: number }>(`select count(*)::int as n from public.agent_runs where agent_id = $1 and status = 'sleeping' and thread_key is not null`, [agentId]);
    asleep = rows[0]!.n;
    if (asleep >= openLeads.length + ROUNDS) break;
    if (performance.now() - lastLog > 15_000) {
      log(`${asleep - ROUNDS} of ${openLeads.length} conversations answered and waiting`);
      lastLog = performance.now();
    }
    await sleep(500);
  }
  const rssOpen = process.memoryUsage().rss;
  figures.add('rss-open', `process RSS with ${openLeads.length + ROUNDS} conversations open (API, both workers and the sandbox CRM in one process)`, 'MiB').sample(rssOpen / 2 ** 20);
  log(
    `${openLeads.length} conversations opened and answered in ${((performance.now() - opened) / 1000).toFixed(0)} s; process RSS ${(rssOpen / 2 ** 20).toFixed(0)} MiB ` +
      `with ${asleep} open (before opening them ${(rssBefore / 2 ** 20).toFixed(0)} MiB)`,
  );

  figures.finish();

  agentWorker.shutdown();
  crmWorker.shutdown();
  baselineWorker.shutdown();
  await Promise.all(running.map((r) => r.catch(() => undefined)));
  await app.close();
  await sandbox.close();
  await nativeConnection.close();
  await connection.close();
  await llm.close();
  await pool.end();
  await admin.end();
  await stack.stop();
}

/** The sandbox LLM in a child process (see bench/support/fake-llm-echo-process.ts). */
async function startFakeLlmProcess(): Promise<{ url: string; requests(): Promise<Array<{ at: number; doneAt: number | null; said: string }>>; close(): Promise<void> }> {
  const child = fork(path.join(import.meta.dirname, 'support', 'fake-llm-echo-process.ts'), { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (message: { url: string }) => resolve(message.url));
    child.once('exit', (code) => reject(new Error(`the fake LLM process exited with code ${code} before listening`)));
  });
  return {
    url,
    requests: () =>
      new Promise((resolve) => {
        const onMessage = (message: { type?: string; requests?: Array<{ at: number; doneAt: number | null; said: string }> }) => {
          if (message.type !== 'requests') return;
          child.off('message', onMessage);
          resolve(message.requests ?? []);
        };
        child.on('message', onMessage);
        child.send({ type: 'requests' });
      }),
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
