import { randomUUID } from 'node:crypto';
import { ScheduleNotFoundError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { crmSyncScheduleId } from '../../workflows/crm-sync-ids.js';
import { startAgentTestStack, type AgentTestStack } from '../support/agent-stack.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { createAgent, createOrgWithMembers } from '../support/db.js';
import { testLogger } from '../support/temporal.js';

// Issue 12, item 6: deleting an org takes its work in Temporal with it: its CRM sync schedules
// are deleted and its open runs cancelled, not left running against rows that are gone.
describe('deleting an organization', () => {
  let stack: AgentTestStack;
  let app: App;

  beforeAll(async () => {
    stack = await startAgentTestStack('org-deletion-test');
    app = await buildApp({ pool: stack.pool, temporal: stack.temporal.client, logger: testLogger, auth: { jwtSecret: TEST_JWT_SECRET }, agentRunsTaskQueue: stack.taskQueue });
  });

  afterAll(async () => {
    await app?.close();
    await stack?.close();
  });

  it('deletes its CRM sync schedules and cancels its open runs', async () => {
    const { admin, temporal, llm } = stack;
    const org = await createOrgWithMembers(admin, ['owner']);
    const token = await signUserToken(org.userWithRole('owner'));
    const agentId = await createAgent(admin, org.orgId);
    const { rows } = await admin.query<{ id: string }>(
      `insert into public.crm_connections (org_id, provider, name, auth_kind) values ($1, 'hubspot', 'to delete', 'token') returning id`,
      [org.orgId],
    );
    const scheduleId = crmSyncScheduleId(rows[0]!.id);
    await temporal.client.schedule.create({
      scheduleId,
      spec: { intervals: [{ every: '1 hour' }] },
      action: { type: 'startWorkflow', workflowType: 'crmSync', taskQueue: `unused-${randomUUID()}`, args: [] },
      state: { paused: true },
    });

    // A run busy with a model that never answers.
    llm.enqueue({ kind: 'text', content: 'never', delayMs: 120_000 });
    const chatCalls = () => llm.requests.filter((r) => r.path.endsWith('/chat/completions')).length;
    const callsBefore = chatCalls();
    const started = await app.inject({ method: 'POST', url: `/v1/orgs/${org.orgId}/agents/${agentId}/runs`, headers: { authorization: `Bearer ${token}` }, payload: { input: 'work' } });
    expect(started.statusCode).toBe(201);
    const handle = temporal.client.workflow.getHandle(started.json().workflowId);
    // Deleted while the model call is in flight, as the scenario says. Deleted between two steps
    // instead, the run's next step finds its rows gone and fails before the cancel arrives (the
    // service's documented best effort), which is not what this test is about.
    const deadline = Date.now() + 30_000;
    while (chatCalls() === callsBefore) {
      if (Date.now() > deadline) throw new Error('the run never reached the model');
      await new Promise((r) => setTimeout(r, 50));
    }
    expect((await admin.query(`select status from public.agent_runs where id = $1`, [started.json().id])).rows[0]?.status).toBe('running');

    const deleted = await app.inject({ method: 'DELETE', url: `/v1/orgs/${org.orgId}`, headers: { authorization: `Bearer ${token}` } });
    expect(deleted.statusCode).toBe(204);

    await expect(temporal.client.schedule.getHandle(scheduleId).describe()).rejects.toBeInstanceOf(ScheduleNotFoundError);
    await handle.result().catch(() => undefined);
    expect((await handle.describe()).status.name).toBe('CANCELLED');
  });
});
