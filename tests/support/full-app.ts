import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Worker } from '@temporalio/worker';
import { fileURLToPath } from 'node:url';
import { buildApp, type App, type AppDeps } from '../../api/app.js';
import type { ConsoleOptions } from '../../api/plugins/console.js';
import { RateGovernor } from '../../integrations/crm/governor.js';
import { createCrmSyncWorker } from '../../workers/crm-sync-worker.js';
import { createAgentRunHandoff } from '../../workers/run-handoff.js';
import { createKnowledgeWorker } from '../../workers/knowledge-worker.js';
import type { CrmSettings } from '../../integrations/crm/settings.js';
import { withServiceRole } from '../../lib/db.js';
import { crmSettingsFor, fastBudget, testCredentialStore, testKeyring } from '../crm/support.js';
import { startFakeHubspot, type FakeHubspot, type HubspotDatasetSize } from '../fakes/hubspot-server.js';
import { startFakeKommo, type FakeKommo, type KommoDatasetSize } from '../../scripts/stack/crm-fakes/kommo.js';
import { startFakeLlm, type FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { signUserToken, TEST_JWT_SECRET } from './auth.js';
import { adminPool, appPool, createAgent, createOrgWithMembers, createRun } from './db.js';
import { connectTestTemporal, createTestAgentWorker, testDataConverter, testLogger, uniqueTaskQueue, type TestTemporal } from './temporal.js';

/**
 * The API with every optional part switched on (CRM routes with fake Kommo and HubSpot), for
 * the tests that must see every route (the route inventory, the sweeps and the fuzzer) and,
 * with `agentWorker`, for the tests that follow a request into the runs it starts (webhooks).
 */
export interface FullTestApp {
  app: App;
  pool: pg.Pool;
  admin: pg.Pool;
  temporal: TestTemporal;
  kommo: FakeKommo;
  hubspot: FakeHubspot;
  settings: CrmSettings;
  /** The queue the API starts agent runs on. */
  taskQueue: string;
  /** The queue the API starts syncs and webhook intake on. */
  crmTaskQueue: string;
  /** The queue the API starts knowledge ingestion on (a knowledge worker polls it with `agentWorker`). */
  knowledgeTaskQueue: string;
  /** With `agentWorker` only: the fake model the worker's runs talk to. */
  llm?: FakeLlmServer;
  /**
   * With `agentWorker: 'later'`: starts the in-process agent worker on the API's queue (a crash
   * test first runs one in a child process it kills).
   */
  startAgentWorker(): Promise<void>;
  close(): Promise<void>;
}

export interface FullTestAppOptions extends Partial<Pick<AppDeps, 'rateLimits' | 'bodyLimitBytes' | 'updateDeadlineMs' | 'caps'>> {
  crmSettings?: (base: CrmSettings) => CrmSettings;
  /** Dataset sizes of the fakes (default 3 Kommo leads, 3 HubSpot deals). */
  kommoDataset?: Partial<KommoDatasetSize>;
  hubspotDataset?: Partial<HubspotDatasetSize>;
  /**
   * Also run an agent worker (and a fake LLM) on the API's queue, so started runs run, and a
   * crm-sync worker that processes webhook deliveries and starts runs on it, and a knowledge
   * worker (customer URLs on loopback allowed) that ingests documents. `'later'`: all of
   * it but the agent worker, which `startAgentWorker()` starts.
   */
  agentWorker?: boolean | 'later';
  /** The console's settings (it is always served, from web/dist unless `dir` says otherwise). */
  console?: Partial<ConsoleOptions>;
}

export const CONSOLE_DIST = fileURLToPath(new URL('../../web/dist', import.meta.url));

export async function startFullTestApp(overrides: FullTestAppOptions = {}): Promise<FullTestApp> {
  const temporal = await connectTestTemporal();
  const pool = appPool({ max: 8 });
  const admin = adminPool();
  const kommo = await startFakeKommo({ dataset: overrides.kommoDataset ?? { leads: 3 }, rateLimitPerSecond: null });
  const hubspot = await startFakeHubspot({ dataset: overrides.hubspotDataset ?? { deals: 3 }, rateLimit: null });
  const base = crmSettingsFor({ kommo, hubspot });
  const settings = overrides.crmSettings ? overrides.crmSettings(base) : base;
  const taskQueue = uniqueTaskQueue('full-app');
  const crmTaskQueue = uniqueTaskQueue('full-app-crm');
  const knowledgeTaskQueue = uniqueTaskQueue('full-app-knowledge');
  const app = await buildApp({
    pool,
    temporal: temporal.client,
    logger: testLogger,
    auth: { jwtSecret: TEST_JWT_SECRET },
    // Without `agentWorker` no worker polls this queue: started workflows just wait, which is
    // all the API sees.
    agentRunsTaskQueue: taskQueue,
    knowledgeTaskQueue,
    crm: { keyring: testKeyring, settings, syncTaskQueue: crmTaskQueue, governor: new RateGovernor(pool, { budgets: { kommo: fastBudget, hubspot: fastBudget } }) },
    rateLimits: overrides.rateLimits ?? { perOrg: 1_000_000, perApiKey: 1_000_000, perUser: 1_000_000, perIp: 1_000_000, windowMs: 60_000 },
    ...(overrides.bodyLimitBytes ? { bodyLimitBytes: overrides.bodyLimitBytes } : {}),
    ...(overrides.updateDeadlineMs ? { updateDeadlineMs: overrides.updateDeadlineMs } : {}),
    ...(overrides.caps ? { caps: overrides.caps } : {}),
    console: { dir: CONSOLE_DIST, ...overrides.console },
  });
  await app.ready();
  const llm = overrides.agentWorker ? await startFakeLlm() : undefined;
  // One credential store for the intake and the agents' replies into CRM threads, as in workers/main.ts.
  const credentials = llm ? testCredentialStore(pool, settings) : undefined;
  // Webhook endpoints at fake receivers on loopback, retried after a second (tests/org-events).
  const webhooks = { keyring: testKeyring, ssrf: settings.ssrf ?? {}, retrySchedule: [1], giveUpAfterSeconds: 60 };
  const workers: Worker[] = [];
  const running: Promise<void>[] = [];
  const startAgentWorker = async () => {
    if (!llm) throw new Error('startAgentWorker needs agentWorker');
    const w = await createTestAgentWorker({ temporal, pool, llmBaseUrl: llm.url, taskQueue, webhooks, ...(credentials ? { credentials } : {}) });
    workers.push(w);
    running.push(w.run());
  };
  if (overrides.agentWorker === true) await startAgentWorker();
  const crmWorker = llm && credentials
    ? await createCrmSyncWorker({
        connection: temporal.nativeConnection,
        namespace: temporal.namespace,
        pool,
        credentials,
        logger: testLogger,
        taskQueue: crmTaskQueue,
        workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
        shutdownGraceTime: '2 seconds',
        dataConverter: testDataConverter,
        handoff: createAgentRunHandoff({ temporal: temporal.client, taskQueue }),
      })
    : undefined;
  if (crmWorker) running.push(crmWorker.run());
  const knowledgeWorker = llm
    ? await createKnowledgeWorker({
        connection: temporal.nativeConnection,
        namespace: temporal.namespace,
        pool,
        taskQueue: knowledgeTaskQueue,
        workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
        shutdownGraceTime: '2 seconds',
        dataConverter: testDataConverter,
        ssrfAllowedHosts: ['127.0.0.1'],
      })
    : undefined;
  if (knowledgeWorker) running.push(knowledgeWorker.worker.run());
  return {
    app,
    pool,
    admin,
    temporal,
    kommo,
    hubspot,
    settings,
    taskQueue,
    crmTaskQueue,
    knowledgeTaskQueue,
    ...(llm ? { llm } : {}),
    startAgentWorker,
    close: async () => {
      for (const w of workers) w.shutdown();
      crmWorker?.shutdown();
      knowledgeWorker?.worker.shutdown();
      await Promise.all(running);
      await knowledgeWorker?.close();
      await llm?.close();
      await app.close();
      await kommo.close();
      await hubspot.close();
      await temporal.close();
      await pool.end();
      await admin.end();
    },
  };
}

/** One resource of every kind in one org, with the ids the route paths take. */
export interface SeededOrg {
  orgId: string;
  orgName: string;
  ownerId: string;
  adminId: string;
  memberId: string;
  owner: string;
  adminToken: string;
  memberToken: string;
  /** A member-scope API key of the org. */
  memberKey: string;
  inviteToken: string;
  ids: {
    agentId: string;
    runId: string;
    approvalId: string;
    documentId: string;
    inviteId: string;
    keyId: string;
    connectionId: string;
    endpointId: string;
    leadId: string;
    userId: string;
    threadKey: string;
    provider: string;
  };
  /** Names and secrets that must never show up in another org's answers. */
  secrets: string[];
}

export async function seedOrg(full: FullTestApp, label: string): Promise<SeededOrg> {
  const tag = `${label}-${randomUUID().slice(0, 8)}`;
  const orgName = `Org ${tag}`;
  const org = await createOrgWithMembers(full.admin, ['owner', 'admin', 'member'], orgName);
  const orgId = org.orgId;
  const [owner, adminToken, memberToken] = await Promise.all([
    signUserToken(org.userWithRole('owner')),
    signUserToken(org.userWithRole('admin')),
    signUserToken(org.userWithRole('member')),
  ]);
  const agentName = `Agent ${tag}`;
  const agentId = await createAgent(full.admin, orgId, { name: agentName, instructions: `Instructions ${tag}` });
  const runInput = `Run input ${tag}`;
  const runId = await createRun(full.admin, orgId, agentId, { input: runInput, events: 1 });
  const approvalId = randomUUID();
  const docTitle = `Doc ${tag}`;
  const documentId = randomUUID();
  await withServiceRole(full.admin, async (tx) => {
    // The run is a chat conversation too, so the routes that read a conversation reach it.
    await tx.query(`update public.agent_runs set thread_key = $2 where id = $1`, [runId, `chat-${tag}`]);
    await tx.query(`insert into public.run_approvals (id, org_id, run_id, seq, kind, tool_name, expires_at) values ($1, $2, $3, 1, 'approval', 'crm_update', now() + interval '1 hour')`, [approvalId, orgId, runId]);
    await tx.query(`insert into public.knowledge_documents (id, org_id, title, body) values ($1, $2, $3, $4)`, [documentId, orgId, docTitle, `Body ${tag}`]);
  });
  const auth = { authorization: `Bearer ${adminToken}` };
  const invite = await full.app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/invites`, headers: auth, payload: { email: `invitee-${tag}@example.test` } });
  const key = await full.app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/api-keys`, headers: auth, payload: { name: `Key ${tag}` } });
  const crmToken = `pat-na1-${randomUUID()}`;
  full.hubspot.addPrivateAppToken(crmToken);
  const connection = await full.app.inject({
    method: 'POST',
    url: `/v1/orgs/${orgId}/crm/connections`,
    headers: auth,
    payload: { provider: 'hubspot', name: `CRM ${tag}`, auth: { kind: 'token', token: crmToken } },
  });
  // A lead the agents remember (its memory row needs an ended conversation of the lead).
  const leadId = `lead-${tag}`;
  const memoryText = `Memory of ${tag}`;
  const connectionId = connection.json().connection?.id as string | undefined;
  if (connectionId) {
    const leadRun = await createRun(full.admin, orgId, agentId, { input: '' });
    await withServiceRole(full.admin, async (tx) => {
      await tx.query(`update public.agent_runs set thread_key = $2, status = 'completed', completed_at = now() where id = $1`, [leadRun, `crm:${connectionId}:${leadId}`]);
      await tx.query(`insert into public.lead_memories (org_id, connection_id, lead_external_id, summary, source_run_id, agent_id) values ($1, $2, $3, $4, $5, $6)`, [orgId, connectionId, leadId, memoryText, leadRun, agentId]);
    });
  }
  // A public IP literal: the SSRF guard needs no DNS for it, and nothing is ever delivered in these tests.
  const endpoint = await full.app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/webhook-endpoints`, headers: auth, payload: { url: `https://93.184.215.14/hooks/${tag}` } });
  for (const res of [invite, key, connection, endpoint]) if (res.statusCode !== 201) throw new Error(`seeding ${label} failed: ${res.statusCode} ${res.body}`);
  return {
    orgId,
    orgName,
    ownerId: org.userWithRole('owner'),
    adminId: org.userWithRole('admin'),
    memberId: org.userWithRole('member'),
    owner,
    adminToken,
    memberToken,
    memberKey: key.json().key,
    inviteToken: invite.json().token,
    ids: {
      agentId,
      runId,
      approvalId,
      documentId,
      inviteId: invite.json().id,
      keyId: key.json().id,
      connectionId: connection.json().connection.id,
      endpointId: endpoint.json().id,
      leadId,
      userId: org.userWithRole('admin'),
      threadKey: `thread-${tag}`,
      provider: 'hubspot',
    },
    secrets: [orgName, agentName, runInput, docTitle, `invitee-${tag}@example.test`, invite.json().token, key.json().key, `Key ${tag}`, crmToken, `CRM ${tag}`, endpoint.json().secret, `/hooks/${tag}`, memoryText],
  };
}

/** One line of api/route-inventory.json, generated from the routes' declarations. */
export type { InventoryRoute } from '../../api/route-access.js';

/** `/v1/orgs/:orgId/agents/:agentId` with the params filled in. */
export function fillPath(path: string, params: Record<string, string>): string {
  return path.replace(/:([A-Za-z]+)/g, (_, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`no value for :${name} in ${path}`);
    return encodeURIComponent(value);
  });
}

export const pathParams = (path: string): string[] => [...path.matchAll(/:([A-Za-z]+)/g)].map((m) => m[1]!);
