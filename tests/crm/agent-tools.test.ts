import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Worker } from '@temporalio/worker';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { createToolRegistry } from '../../activities/tools/builtin.js';
import { createCrmTools } from '../../activities/tools/crm-tools.js';
import { RateGovernor } from '../../integrations/crm/governor.js';
import { withServiceRole } from '../../lib/db.js';
import { agentRunWorkflowId } from '../../workflows/task-queues.js';
import { agentRun } from '../../workflows/agent-run/index.js';
import { startFakeKommo, type FakeKommo } from '../../scripts/stack/crm-fakes/kommo.js';
import { startFakeLlm, type FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { adminPool, appPool, createAgent, createOrgWithMembers, createRun } from '../support/db.js';
import { connectTestTemporal, createTestAgentWorker, testLogger, uniqueTaskQueue, type TestTemporal } from '../support/temporal.js';
import { createCrmConnection, crmSettingsFor, fastBudget, testCredentialStore, testKeyring, testKeySpec } from './support.js';

const crashWorkerPath = fileURLToPath(new URL('./crash-worker.ts', import.meta.url));
const LONG_LIVED = 'kommo-long-lived-token';

describe('agent CRM tools (real Temporal, real Postgres, fake Kommo)', { timeout: 120_000 }, () => {
  let temporal: TestTemporal;
  let llm: FakeLlmServer;
  let kommo: FakeKommo;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let worker: { worker: Worker; running: Promise<void> } | undefined;
  let child: ChildProcess | undefined;

  beforeAll(async () => {
    temporal = await connectTestTemporal();
    llm = await startFakeLlm();
    kommo = await startFakeKommo({ dataset: { leads: 30, contacts: 5, companies: 2 }, rateLimitPerSecond: null });
    kommo.addLongLivedToken(LONG_LIVED);
    pool = appPool({ max: 8 });
    admin = adminPool();
  });

  afterEach(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    child = undefined;
    if (worker) {
      worker.worker.shutdown();
      await worker.running;
      worker = undefined;
    }
    kommo.onNoteStored = null;
    llm.reset();
  });

  afterAll(async () => {
    await llm?.close();
    await kommo?.close();
    await temporal?.close();
    await pool?.end();
    await admin?.end();
  });

  async function startWorker(taskQueue: string) {
    const credentials = testCredentialStore(pool, crmSettingsFor({ kommo }));
    const w = await createTestAgentWorker({ temporal, pool, llmBaseUrl: llm.url, taskQueue, tools: createToolRegistry(createCrmTools({ credentials })) });
    worker = { worker: w, running: w.run() };
  }

  /** An org with a Kommo connection (long-lived token), an agent bound to it, and a run. */
  async function newRun(opts: { bound?: boolean; tools?: string[] } = {}) {
    const { orgId } = await createOrgWithMembers(admin, ['owner']);
    const connectionId = await createCrmConnection(admin, orgId, {
      provider: 'kommo',
      apiBaseUrl: kommo.url,
      authKind: 'token',
      tokens: { accessToken: LONG_LIVED, refreshToken: null, expiresAt: null },
    });
    const agentId = await createAgent(admin, orgId, { model: 'test/model' });
    await admin.query(`update public.agents set allowed_tools = $2, crm_connection_id = $3 where id = $1`, [
      agentId,
      opts.tools ?? ['crm_search_records', 'crm_get_record', 'crm_add_note', 'crm_create_task', 'crm_update_stage'],
      opts.bound === false ? null : connectionId,
    ]);
    const runId = await createRun(admin, orgId, agentId, { input: 'work the lead' });
    return { orgId, agentId, runId, connectionId };
  }

  async function toolEvents(runId: string) {
    const { rows } = await admin.query<{ payload: { name: string; result?: Record<string, unknown>; error?: string } }>(
      `select payload from public.run_events where run_id = $1 and type = 'tool.completed' order by seq`,
      [runId],
    );
    return rows.map((r) => r.payload);
  }

  it('searches, reads and writes the bound CRM: one note, one task, the stage moved, through the governor', async () => {
    const taskQueue = uniqueTaskQueue('crm-tools');
    await startWorker(taskQueue);
    const ids = await newRun();
    await withServiceRole(admin, (tx) =>
      tx.query(
        `insert into public.crm_records (org_id, connection_id, object_type, external_id, name, stage_id, pipeline_id)
         values ($1, $2, 'deals', '1000007', 'Lead 7', '70011', '7001'), ($1, $2, 'deals', '1000008', 'Lead 8', '70011', '7001'),
                ($1, $2, 'contacts', '300001', 'Contact 1', null, null)`,
        [ids.orgId, ids.connectionId],
      ),
    );
    const notesBefore = kommo.notes.length;
    llm.enqueue(
      {
        kind: 'tool_calls',
        calls: [
          { id: 'c1', name: 'crm_search_records', arguments: JSON.stringify({ query: 'lead 7' }) },
          { id: 'c2', name: 'crm_get_record', arguments: JSON.stringify({ type: 'deals', id: '1000007' }) },
          { id: 'c3', name: 'crm_add_note', arguments: JSON.stringify({ type: 'deals', id: '1000007', text: 'Called, wants a demo on Friday.' }) },
          { id: 'c4', name: 'crm_create_task', arguments: JSON.stringify({ type: 'deals', id: '1000007', text: 'Send the demo invite', dueAt: '2026-12-04T09:00:00Z' }) },
          { id: 'c5', name: 'crm_update_stage', arguments: JSON.stringify({ dealId: '1000007', stageId: '70012' }) },
          { id: 'c6', name: 'crm_get_record', arguments: JSON.stringify({ type: 'deals', id: '999' }) },
        ],
      },
      { kind: 'text', content: 'Done.' },
    );

    const handle = await temporal.client.workflow.start(agentRun, { taskQueue, workflowId: agentRunWorkflowId(ids.runId), args: [ids] });
    expect((await handle.result()).status).toBe('completed');

    const [search, get, note, task, stage, missing] = await toolEvents(ids.runId);
    expect(search?.result).toEqual({ results: [expect.objectContaining({ type: 'deals', id: '1000007', name: 'Lead 7' })] });
    expect(get?.result).toMatchObject({ type: 'deals', id: '1000007', name: 'Lead 7', pipelineId: expect.any(String) });
    const newNotes = kommo.notes.slice(notesBefore);
    expect(newNotes).toEqual([expect.objectContaining({ entityType: 'leads', entityId: 1_000_007, text: 'Called, wants a demo on Friday.' })]);
    expect(note?.result).toEqual({ noteId: String(newNotes[0]!.id), recordType: 'deals', recordId: '1000007' });
    expect(kommo.tasks.filter((t) => t.entityId === 1_000_007)).toEqual([expect.objectContaining({ text: 'Send the demo invite', completeTill: Date.parse('2026-12-04T09:00:00Z') / 1000 })]);
    expect(task?.result).toMatchObject({ taskId: expect.any(String) });
    expect(kommo.store.get('leads', 1_000_007)?.fields.status_id).toBe(70012);
    expect(stage?.result).toMatchObject({ id: '1000007', stageId: '70012' });
    expect(missing?.error).toMatch(/no deals record with id 999/);
    // The synced copy follows the stage change; the three writes have one ledger row each.
    const record = await admin.query(`select stage_id from public.crm_records where connection_id = $1 and object_type = 'deals' and external_id = '1000007'`, [ids.connectionId]);
    expect(record.rows[0]).toEqual({ stage_id: '70012' });
    const ledger = await admin.query(`select tool_name from public.effect_ledger where run_id = $1 order by tool_name`, [ids.runId]);
    expect(ledger.rows.map((r: { tool_name: string }) => r.tool_name)).toEqual(['crm_add_note', 'crm_create_task', 'crm_update_stage']);
    // CRM requests took slots in the connection's rate bucket, the one syncs use.
    const bucket = await admin.query(`select count(*)::int as n from public.crm_rate_buckets where connection_id = $1`, [ids.connectionId]);
    expect(bucket.rows[0]).toEqual({ n: 1 });
  });

  it('an agent without a CRM connection gets a tool error, and nothing is written', async () => {
    const taskQueue = uniqueTaskQueue('crm-tools-unbound');
    await startWorker(taskQueue);
    const ids = await newRun({ bound: false });
    const notesBefore = kommo.notes.length;
    llm.enqueue(
      { kind: 'tool_calls', calls: [{ id: 'c1', name: 'crm_add_note', arguments: JSON.stringify({ type: 'deals', id: '1000001', text: 'hello' }) }] },
      { kind: 'text', content: 'I cannot.' },
    );
    const handle = await temporal.client.workflow.start(agentRun, { taskQueue, workflowId: agentRunWorkflowId(ids.runId), args: [ids] });
    expect((await handle.result()).status).toBe('completed');
    expect((await toolEvents(ids.runId))[0]?.error).toMatch(/not connected to a CRM/);
    expect(kommo.notes.length).toBe(notesBefore);
  });

  it('SIGKILL right after the CRM stored the note, before our ledger committed: the retry finds it, one note in the CRM', async () => {
    const taskQueue = uniqueTaskQueue('crm-tools-crash');
    child = spawn(process.execPath, ['--import', 'tsx', crashWorkerPath], {
      env: { ...process.env, CRM_CRASH_MODE: 'agent', CRM_CRASH_TASK_QUEUE: taskQueue, CRM_CRASH_LLM_URL: llm.url, CRM_TEST_KEY_SPEC: testKeySpec },
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
    // The fake kills the worker after storing the note and before answering: the CRM acted, our commit never happens.
    kommo.onNoteStored = () => proc.kill('SIGKILL');

    const ids = await newRun({ tools: ['crm_add_note'] });
    llm.enqueue(
      { kind: 'tool_calls', calls: [{ id: 'c1', name: 'crm_add_note', arguments: JSON.stringify({ type: 'deals', id: '1000011', text: 'Exactly once, please.' }) }] },
      { kind: 'text', content: 'Noted.' },
    );
    const requestsBefore = kommo.apiRequests().length;
    const handle = await temporal.client.workflow.start(agentRun, {
      taskQueue,
      workflowId: agentRunWorkflowId(ids.runId),
      args: [{ ...ids, heartbeatTimeoutSeconds: 3 }],
      workflowTaskTimeout: '2 seconds',
    });
    expect(await exited).toBe('SIGKILL');
    kommo.onNoteStored = null;
    await startWorker(taskQueue);

    expect((await handle.result()).status).toBe('completed');
    const notes = kommo.notes.filter((n) => n.entityId === 1_000_011);
    expect(notes).toHaveLength(1);
    const posts = kommo.apiRequests().slice(requestsBefore).filter((r) => r.method === 'POST' && r.path === '/api/v4/leads/notes');
    expect(posts).toHaveLength(1);
    // The retry looked the note up instead of writing it again, and recorded the CRM's id.
    const lookups = kommo.apiRequests().slice(requestsBefore).filter((r) => r.method === 'GET' && r.path === '/api/v4/leads/1000011/notes');
    expect(lookups.length).toBeGreaterThanOrEqual(1);
    const ledger = await admin.query(`select result from public.effect_ledger where run_id = $1`, [ids.runId]);
    expect(ledger.rows).toEqual([{ result: { noteId: String(notes[0]!.id), recordType: 'deals', recordId: '1000011' } }]);
    expect((await toolEvents(ids.runId))[0]?.result).toEqual({ noteId: String(notes[0]!.id), recordType: 'deals', recordId: '1000011' });
  });

  it('the agents API binds an agent to a CRM connection of its own org only', async () => {
    const settings = crmSettingsFor({ kommo });
    const app: App = await buildApp({
      pool,
      temporal: temporal.client,
      logger: testLogger,
      auth: { jwtSecret: TEST_JWT_SECRET },
      crm: { keyring: testKeyring, settings, syncTaskQueue: uniqueTaskQueue('unused'), governor: new RateGovernor(pool, { budgets: { kommo: fastBudget } }) },
    });
    try {
      const a = await createOrgWithMembers(admin, ['owner']);
      const b = await createOrgWithMembers(admin, ['owner']);
      const tokens = { accessToken: LONG_LIVED, refreshToken: null, expiresAt: null };
      const own = await createCrmConnection(admin, a.orgId, { provider: 'kommo', apiBaseUrl: kommo.url, authKind: 'token', tokens });
      const foreign = await createCrmConnection(admin, b.orgId, { provider: 'kommo', apiBaseUrl: kommo.url, authKind: 'token', tokens });
      const ownerA = await signUserToken(a.userWithRole('owner'));
      const headers = { authorization: `Bearer ${ownerA}` };
      const created = await app.inject({ method: 'POST', url: `/v1/orgs/${a.orgId}/agents`, headers, payload: { name: 'Closer', model: 'test/model', crmConnectionId: own } });
      expect(created.statusCode).toBe(201);
      expect(created.json()).toMatchObject({ crmConnectionId: own });
      const agentId = created.json<{ id: string }>().id;
      const stolen = await app.inject({ method: 'PATCH', url: `/v1/orgs/${a.orgId}/agents/${agentId}`, headers, payload: { crmConnectionId: foreign } });
      expect(stolen.statusCode).toBe(400);
      expect(stolen.json()).toMatchObject({ type: expect.stringContaining('validation-error'), errors: [{ path: 'body.crmConnectionId' }] });
      const unbound = await app.inject({ method: 'PATCH', url: `/v1/orgs/${a.orgId}/agents/${agentId}`, headers, payload: { crmConnectionId: null } });
      expect(unbound.json()).toMatchObject({ crmConnectionId: null });
    } finally {
      await app.close();
    }
  });
});
