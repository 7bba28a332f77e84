import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { Worker } from '@temporalio/worker';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../api/app.js';
import { sha256Hex } from '../../lib/crypto.js';
import { createCrmSyncWorker } from '../../workers/crm-sync-worker.js';
import { createAgentRunHandoff } from '../../workers/run-handoff.js';
import { crmIntakeWorkflowId } from '../../workflows/crm-sync-ids.js';
import { crmIntake } from '../../workflows/crm-intake.js';
import { signUserToken } from '../support/auth.js';
import { createOrgWithMembers } from '../support/db.js';
import { startFullTestApp, type FullTestApp } from '../support/full-app.js';
import { testDataConverter, testLogger } from '../support/temporal.js';
import { createCrmConnection, intakeSettled, testCredentialStore, testKeySpec } from './support.js';

const crashWorkerPath = fileURLToPath(new URL('./crash-worker.ts', import.meta.url));

/** Kommo's form-encoded webhook body: a lead moved to a stage and a chat message from another lead. */
const kommoDelivery = (opts: { stageLead?: number; statusId?: number; messageLead?: number; text?: string }) => {
  const form = new URLSearchParams();
  if (opts.stageLead !== undefined) {
    form.set('leads[status][0][id]', String(opts.stageLead));
    form.set('leads[status][0][status_id]', String(opts.statusId));
  }
  if (opts.messageLead !== undefined) {
    form.set('message[add][0][id]', randomUUID());
    form.set('message[add][0][type]', 'incoming');
    form.set('message[add][0][entity_type]', 'lead');
    form.set('message[add][0][entity_id]', String(opts.messageLead));
    form.set('message[add][0][text]', opts.text ?? 'Hello?');
  }
  form.set('account[id]', '31000001');
  return form.toString();
};

describe('durable webhook intake: the 200 comes first, and nothing is lost or done twice', { timeout: 180_000 }, () => {
  let full: FullTestApp;
  let app: App;
  let admin: pg.Pool;
  let orgId: string;
  let adminToken: string;
  const secret = `kommo-secret-${randomUUID()}`;
  const token = `kommo-${randomUUID()}`;

  beforeAll(async () => {
    full = await startFullTestApp({ agentWorker: true, kommoDataset: { leads: 10 } });
    ({ app, admin } = full);
    full.kommo.addLongLivedToken(token);
    const org = await createOrgWithMembers(admin, ['owner', 'admin']);
    orgId = org.orgId;
    adminToken = await signUserToken(org.userWithRole('admin'));
  });

  afterAll(async () => {
    await full?.close();
  });

  const newConnection = () =>
    createCrmConnection(admin, orgId, {
      provider: 'kommo',
      apiBaseUrl: full.kommo.url,
      authKind: 'token',
      tokens: { accessToken: token, refreshToken: null, expiresAt: null },
      webhookSecretHash: sha256Hex(secret),
    });

  async function createAgent(connectionId: string, triggers: unknown[]): Promise<string> {
    const res = await app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgId}/agents`,
      headers: { authorization: `Bearer ${adminToken}` },
      payload: { name: `Agent ${randomUUID().slice(0, 6)}`, model: 'sandbox/echo', crmConnectionId: connectionId, triggers },
    });
    expect(res.statusCode, res.body).toBe(201);
    return res.json().id;
  }

  const post = (connectionId: string, body: string) =>
    app.inject({ method: 'POST', url: `/v1/webhooks/crm/kommo/${connectionId}?secret=${secret}`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: body });
  const runsOf = async (agentId: string) => (await admin.query<{ id: string; thread_key: string | null }>(`select id, thread_key from public.agent_runs where agent_id = $1`, [agentId])).rows;
  const messagesOf = async (agentId: string) =>
    (await admin.query<{ content: string }>(`select m.content from public.conversation_messages m join public.agent_runs r on r.id = m.run_id where r.agent_id = $1`, [agentId])).rows;
  const stageOf = async (connectionId: string, leadId: number) =>
    (await admin.query<{ stage_id: string }>(`select stage_id from public.crm_records where connection_id = $1 and object_type = 'deals' and external_id = $2`, [connectionId, String(leadId)])).rows[0]?.stage_id;

  it('a CRM that is down for a minute after the 200 delays the work and loses none of it; a redelivery during the outage adds nothing', async () => {
    const connectionId = await newConnection();
    const status = full.kommo.pipelines[0]!.statuses[1]!.id;
    const stageAgent = await createAgent(connectionId, [{ event: 'lead_stage_entered', stageId: String(status), cooldownMinutes: 0 }]);
    const chatAgent = await createAgent(connectionId, [{ event: 'incoming_message' }]);
    full.kommo.updateLead(1_000_004, { status_id: status });

    // Every API call fails with 503 and a Retry-After, as a CRM in maintenance answers.
    full.kommo.injectFailure({ status: 503, body: { title: 'Service Unavailable' }, headers: { 'retry-after': '2' }, times: Number.MAX_SAFE_INTEGER });
    const outageStarted = Date.now();
    const body = kommoDelivery({ stageLead: 1_000_004, statusId: status, messageLead: 1_000_005, text: 'Are you open on Sunday?' });
    const started = Date.now();
    const answered = await post(connectionId, body);
    // The answer waited for nothing the CRM does.
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(answered.statusCode).toBe(200);
    expect(answered.json()).toEqual({ received: 2, accepted: 2, duplicates: 0 });

    // The intake is trying (and failing) against the CRM; nothing has happened yet.
    await expect.poll(() => full.kommo.apiRequests().filter((r) => r.status === 503).length, { timeout: 20_000 }).toBeGreaterThan(1);
    expect(await runsOf(stageAgent)).toEqual([]);
    expect(await messagesOf(chatAgent)).toEqual([]);
    const redelivered = await post(connectionId, body);
    expect(redelivered.json()).toEqual({ received: 2, accepted: 0, duplicates: 2 });

    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 60_000 - (Date.now() - outageStarted))));
    full.kommo.clearFailures();
    await intakeSettled(admin, connectionId, 60_000);

    expect(await stageOf(connectionId, 1_000_004)).toBe(String(status));
    expect(await runsOf(stageAgent)).toHaveLength(1);
    expect(await messagesOf(chatAgent)).toEqual([{ content: 'Are you open on Sunday?' }]);
    expect(await runsOf(chatAgent)).toEqual([{ id: expect.any(String), thread_key: `crm:${connectionId}:1000005` }]);
    const { rows } = await admin.query(`select error from public.crm_webhook_deliveries where connection_id = $1`, [connectionId]);
    expect(rows).toEqual([{ error: null }, { error: null }]);
  });

  it('a worker SIGKILLed right after it started a run, before the delivery was marked, starts nothing twice', async () => {
    const connectionId = await newConnection();
    const status = full.kommo.pipelines[0]!.statuses[2]!.id;
    const stageAgent = await createAgent(connectionId, [{ event: 'lead_stage_entered', stageId: String(status), cooldownMinutes: 0 }]);
    const chatAgent = await createAgent(connectionId, [{ event: 'incoming_message' }]);
    full.kommo.updateLead(1_000_006, { status_id: status });
    const taskQueue = `${full.crmTaskQueue}-crash-${randomUUID().slice(0, 8)}`;

    let child: ChildProcess | undefined;
    let replacement: { worker: Worker; running: Promise<void> } | undefined;
    try {
      child = spawn(process.execPath, ['--import', 'tsx', crashWorkerPath], {
        env: { ...process.env, CRM_CRASH_MODE: 'intake', CRM_CRASH_TASK_QUEUE: taskQueue, CRM_CRASH_AGENT_TASK_QUEUE: full.taskQueue, CRM_TEST_KEY_SPEC: testKeySpec },
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

      // The intake of this connection runs on the crash worker's queue, with a short heartbeat
      // timeout so the dead worker's batch moves on quickly; the API's signal-with-start finds it.
      await full.temporal.client.workflow.start(crmIntake, {
        taskQueue,
        workflowId: crmIntakeWorkflowId(connectionId),
        args: [{ orgId, connectionId, heartbeatTimeoutSeconds: 2, idleSeconds: 120 }],
        workflowTaskTimeout: '2 seconds',
      });
      const answered = await post(connectionId, kommoDelivery({ stageLead: 1_000_006, statusId: status, messageLead: 1_000_007, text: 'Is delivery free?' }));
      expect(answered.json()).toEqual({ received: 2, accepted: 2, duplicates: 0 });
      expect(await exited).toBe('SIGKILL');

      // What the dead worker left: the run row and its workflow, but both deliveries still open.
      const started = await runsOf(stageAgent);
      expect(started).toHaveLength(1);
      const open = await admin.query<{ n: number }>(`select count(*)::int as n from public.crm_webhook_deliveries where connection_id = $1 and processed_at is null`, [connectionId]);
      expect(open.rows[0]!.n).toBe(2);

      const worker = await createCrmSyncWorker({
        connection: full.temporal.nativeConnection,
        namespace: full.temporal.namespace,
        pool: full.pool,
        credentials: testCredentialStore(full.pool, full.settings),
        logger: testLogger,
        taskQueue,
        workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
        shutdownGraceTime: '2 seconds',
        dataConverter: testDataConverter,
        handoff: createAgentRunHandoff({ temporal: full.temporal.client, taskQueue: full.taskQueue }),
      });
      replacement = { worker, running: worker.run() };
      await intakeSettled(admin, connectionId, 60_000);

      expect(await runsOf(stageAgent)).toEqual(started);
      const firings = await admin.query(`select count(*)::int as n from public.agent_trigger_firings where agent_id = $1`, [stageAgent]);
      expect(firings.rows[0]).toEqual({ n: 1 });
      expect(await messagesOf(chatAgent)).toEqual([{ content: 'Is delivery free?' }]);
      expect(await runsOf(chatAgent)).toHaveLength(1);
      // One workflow execution per run, started once: the run's history begins with one start.
      const description = await full.temporal.client.workflow.getHandle(`agent-run:${started[0]!.id}`).describe();
      expect(description.workflowId).toBe(`agent-run:${started[0]!.id}`);
      const executions = [];
      for await (const e of full.temporal.client.workflow.list({ query: `WorkflowId = 'agent-run:${started[0]!.id}'` })) executions.push(e);
      expect(executions).toHaveLength(1);
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      if (replacement) {
        replacement.worker.shutdown();
        await replacement.running;
      }
    }
  });
});
