import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { Client, WorkflowNotFoundError } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { createLifecycleActivities } from '../../activities/agent-run/lifecycle.js';
import type { FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { startAgentTestStack, type AgentTestStack } from '../support/agent-stack.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { createAgent, createOrgWithMembers } from '../support/db.js';
import { testDataConverter, testLogger, type TestTemporal } from '../support/temporal.js';

// Issue 12, item 8: a run completed, the same Idempotency-Key reached an API whose Temporal no
// longer held the closed workflow, a second execution started and flipped the row to failed.
describe('a finished run never changes its outcome', () => {
  let stack: AgentTestStack;
  let temporal: TestTemporal;
  let llm: FakeLlmServer;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let app: App;
  let orgId: string;
  let agentId: string;
  let token: string;

  beforeAll(async () => {
    stack = await startAgentTestStack('finished-runs-test');
    ({ temporal, llm, pool, admin } = stack);
    app = await buildApp({ pool, temporal: temporal.client, logger: testLogger, auth: { jwtSecret: TEST_JWT_SECRET }, agentRunsTaskQueue: stack.taskQueue });
    const org = await createOrgWithMembers(admin, ['owner']);
    orgId = org.orgId;
    agentId = await createAgent(admin, orgId, { model: 'test/model' });
    token = await signUserToken(org.userWithRole('owner'));
  });

  afterAll(async () => {
    await app?.close();
    await stack?.close();
  });

  const startRun = (on: App, key: string) =>
    on.inject({
      method: 'POST',
      url: `/v1/orgs/${orgId}/agents/${agentId}/runs`,
      headers: { authorization: `Bearer ${token}`, 'idempotency-key': key },
      payload: { input: 'Qualify this lead' },
    });

  async function waitUntil<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const status = async (runId: string) => (await admin.query<{ status: string }>(`select status from public.agent_runs where id = $1`, [runId])).rows[0]!.status;

  async function workflowExists(client: Client, workflowId: string): Promise<boolean> {
    try {
      await client.workflow.getHandle(workflowId).describe();
      return true;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return false;
      throw err;
    }
  }

  it('answers an idempotent replay with the stored run and starts nothing when Temporal no longer holds the workflow', async () => {
    llm.enqueue({ kind: 'text', content: 'Qualified.', usage: { inputTokens: 3, outputTokens: 1 } });
    const key = `finished-${randomUUID()}`;
    const first = await startRun(app, key);
    expect(first.statusCode).toBe(201);
    const { id: runId, workflowId } = first.json();
    await waitUntil('the run to complete', async () => ((await status(runId)) === 'completed' ? true : undefined));

    // A second API on the same database whose Temporal never held this workflow (another dev
    // stack; in production, a history past retention), and the first API had died before
    // recording that Temporal accepted the start.
    const namespace = `finished-runs-${randomUUID().slice(0, 8)}`;
    await temporal.client.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs('1 day') });
    const elsewhere = new Client({ connection: temporal.client.connection, namespace, dataConverter: testDataConverter });
    await waitUntil('the namespace to be usable', async () => {
      try {
        await elsewhere.workflowService.describeNamespace({ namespace });
        return true;
      } catch {
        return undefined;
      }
    });
    const otherApp = await buildApp({ pool, temporal: elsewhere, logger: testLogger, auth: { jwtSecret: TEST_JWT_SECRET }, agentRunsTaskQueue: stack.taskQueue });
    try {
      await admin.query(`update public.agent_runs set dispatched_at = null where id = $1`, [runId]);

      const replay = await startRun(otherApp, key);
      expect(replay.statusCode).toBe(200);
      expect(replay.json()).toMatchObject({ id: runId, status: 'completed' });
      expect(await workflowExists(elsewhere, workflowId)).toBe(false);
      expect(await status(runId)).toBe('completed');
    } finally {
      await otherApp.close();
    }
  });

  it('keeps a completed run completed when a later execution finishes it as failed, and adds no second final event', async () => {
    llm.enqueue({ kind: 'text', content: 'Done.', usage: { inputTokens: 3, outputTokens: 1 } });
    const first = await startRun(app, `finished-${randomUUID()}`);
    const runId: string = first.json().id;
    await waitUntil('the run to complete', async () => ((await status(runId)) === 'completed' ? true : undefined));
    const before = await admin.query(`select status, output, error, completed_at from public.agent_runs where id = $1`, [runId]);
    const { rows: lastSeq } = await admin.query<{ seq: number }>(`select max(seq)::int as seq from public.run_events where run_id = $1`, [runId]);

    // What a second execution's failure path does: finish the run as failed.
    const { finishRun } = createLifecycleActivities({ pool, events: null });
    await finishRun({ orgId, runId, seq: lastSeq[0]!.seq + 1, outcome: { status: 'failed', error: { type: 'RunNotFound', message: `Run ${runId} has already finished` } } });

    const after = await admin.query(`select status, output, error, completed_at from public.agent_runs where id = $1`, [runId]);
    expect(after.rows[0]).toEqual(before.rows[0]);
    const finals = await admin.query(`select type from public.run_events where run_id = $1 and type like 'run.%' and type <> 'run.started' order by seq`, [runId]);
    expect(finals.rows).toEqual([{ type: 'run.completed' }]);
  });
});
