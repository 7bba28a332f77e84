import type pg from 'pg';
import { z } from 'zod';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createToolRegistry } from '../../activities/tools/builtin.js';
import { defineTool, type AgentTool } from '../../activities/tools/registry.js';
import { encryptSecret, generateKeySpec, parseKeyring } from '../../lib/crypto.js';
import { orgEventId } from '../../lib/org-events.js';
import { generateWebhookSecret } from '../../lib/standard-webhooks.js';
import { agentRun } from '../../workflows/agent-run/index.js';
import { agentRunWorkflowId } from '../../workflows/task-queues.js';
import { webhookDeliveryWorkflowId } from '../../workflows/webhook-delivery.js';
import { startWebhookReceiver, type WebhookReceiver } from '../fakes/webhook-receiver.js';
import { startAgentTestStack, type AgentTestStack } from '../support/agent-stack.js';
import { createAgent, createOrgWithMembers, createRun } from '../support/db.js';

const keyring = parseKeyring(generateKeySpec('webhooks-test'));
const needsApproval = defineTool({
  name: 'test_refund',
  description: 'Refunds an order (test tool that needs approval)',
  kind: 'effect',
  parameters: z.strictObject({ orderId: z.string() }),
  async execute() {
    return { refunded: true };
  },
}) as AgentTool;

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('org events reach the org webhook endpoints, signed, with retries', () => {
  let stack: AgentTestStack;
  let admin: pg.Pool;
  let receiver: WebhookReceiver;

  beforeAll(async () => {
    receiver = await startWebhookReceiver();
    stack = await startAgentTestStack('org-webhooks-test', {
      worker: {
        tools: createToolRegistry([needsApproval]),
        webhooks: { keyring, ssrf: { allowedHosts: [new URL(receiver.url).host] }, retrySchedule: [1, 1, 2], giveUpAfterSeconds: 8 },
      },
    });
    admin = stack.admin;
  });

  afterAll(async () => {
    await stack?.close();
    await receiver?.close();
  });

  beforeEach(() => {
    stack.llm.reset();
    receiver.received.length = 0;
    receiver.mode = 'up';
  });

  /** An org with an endpoint at the receiver (arranged as the API stores it: secret encrypted). */
  async function orgWithEndpoint(eventTypes: string[] = []) {
    const { orgId } = await createOrgWithMembers(admin, ['owner']);
    const secret = generateWebhookSecret();
    const { rows } = await admin.query<{ id: string }>(`insert into public.webhook_endpoints (org_id, url, event_types, secret) values ($1, $2, $3, 'v1.pending') returning id`, [
      orgId,
      receiver.url,
      eventTypes,
    ]);
    const endpointId = rows[0]!.id;
    await admin.query(`update public.webhook_endpoints set secret = $2 where id = $1`, [endpointId, encryptSecret(keyring, secret, { orgId, rowId: endpointId, column: 'webhook_endpoints.secret' })]);
    receiver.secret = secret;
    return { orgId, endpointId };
  }

  async function failedRun(orgId: string) {
    const agentId = await createAgent(admin, orgId, { model: 'test/model' });
    const runId = await createRun(admin, orgId, agentId, { input: 'Fail please' });
    stack.llm.enqueue({ kind: 'error', status: 400, message: 'The model does not exist' });
    await stack.temporal.client.workflow.execute(agentRun, { taskQueue: stack.taskQueue, workflowId: agentRunWorkflowId(runId), args: [{ orgId, agentId, runId }] }).catch(() => undefined);
    return { agentId, runId };
  }

  it('delivers run.failed once, signed as Standard Webhooks specifies, with a verifiable body', async () => {
    const { orgId, endpointId } = await orgWithEndpoint();
    const { runId, agentId } = await failedRun(orgId);

    const delivery = await waitFor('the delivery to succeed', async () => {
      const { rows } = await admin.query(`select * from public.webhook_deliveries where endpoint_id = $1 and status = 'delivered'`, [endpointId]);
      return rows[0];
    });
    expect(receiver.received).toHaveLength(1);
    const [hook] = receiver.received;
    expect(hook!.verified).toBe(true);
    const eventId = orgEventId(orgId, 'run.failed', runId);
    expect(hook!.headers['webhook-id']).toBe(eventId);
    expect(hook!.headers['content-type']).toBe('application/json');
    const body = JSON.parse(hook!.body);
    expect(body).toMatchObject({ id: eventId, type: 'run.failed', data: { runId, agentId, error: { type: 'LlmRequestRejected' } } });
    expect(Date.parse(body.timestamp)).not.toBeNaN();
    expect(delivery).toMatchObject({ attempts: 1, last_status_code: 204, last_error: null, next_attempt_at: null });
    const events = await admin.query(`select type, seq from public.org_events where org_id = $1`, [orgId]);
    expect(events.rows).toEqual([{ type: 'run.failed', seq: '1' }]);
    const result = await stack.temporal.client.workflow.getHandle(webhookDeliveryWorkflowId(delivery.id)).result();
    expect(result).toEqual({ outcome: 'delivered', attempts: 1 });
  });

  it('a receiver that is down gets the event when it comes back; the log shows each attempt', async () => {
    const { orgId, endpointId } = await orgWithEndpoint();
    receiver.mode = 'down';
    await failedRun(orgId);

    // Two failed attempts are logged, with the next one planned, before the receiver is back.
    const pending = await waitFor('two failed attempts', async () => {
      const { rows } = await admin.query(`select * from public.webhook_deliveries where endpoint_id = $1 and attempts >= 2`, [endpointId]);
      return rows[0];
    });
    expect(pending.status).toBe('pending');
    expect(pending.last_error).toMatch(/could not reach the endpoint/);
    expect(pending.next_attempt_at).toBeInstanceOf(Date);
    receiver.mode = 'up';

    const delivered = await waitFor('the delivery after the outage', async () => {
      const { rows } = await admin.query(`select * from public.webhook_deliveries where endpoint_id = $1 and status = 'delivered'`, [endpointId]);
      return rows[0];
    });
    expect(receiver.received).toHaveLength(1);
    expect(receiver.received[0]!.verified).toBe(true);
    const attempts = await admin.query(`select attempt, status_code, error from public.webhook_delivery_attempts where delivery_id = $1 order by attempt`, [delivered.id]);
    expect(attempts.rows.length).toBe(delivered.attempts);
    expect(attempts.rows.at(-1)).toEqual({ attempt: delivered.attempts, status_code: 204, error: null });
    expect(attempts.rows.slice(0, -1).every((a: { status_code: number | null }) => a.status_code === null)).toBe(true);
  });

  it('gives up after the horizon (24 h in production, 8 s here) and marks the delivery failed', async () => {
    const { orgId, endpointId } = await orgWithEndpoint();
    receiver.mode = 500;
    await failedRun(orgId);

    const failed = await waitFor('the delivery to fail', async () => {
      const { rows } = await admin.query(`select * from public.webhook_deliveries where endpoint_id = $1 and status = 'failed'`, [endpointId]);
      return rows[0];
    });
    expect(failed).toMatchObject({ last_status_code: 500, last_error: 'the endpoint answered 500', next_attempt_at: null, delivered_at: null });
    expect(failed.attempts).toBeGreaterThanOrEqual(3);
    expect(receiver.received).toHaveLength(failed.attempts);
    expect(receiver.received.every((r) => r.verified && r.headers['webhook-id'] === receiver.received[0]!.headers['webhook-id'])).toBe(true);
    const result = await stack.temporal.client.workflow.getHandle(webhookDeliveryWorkflowId(failed.id)).result();
    expect(result).toEqual({ outcome: 'failed', attempts: failed.attempts });
  });

  it('announces an approval request to endpoints subscribed to it, and not to others', async () => {
    const { orgId, endpointId } = await orgWithEndpoint(['approval.requested']);
    const other = await admin.query<{ id: string }>(`insert into public.webhook_endpoints (org_id, url, event_types, secret) values ($1, $2, '{reply.failed}', 'v1.x.x.x.x') returning id`, [orgId, receiver.url]);
    const agentId = await createAgent(admin, orgId, { model: 'test/model' });
    await admin.query(`update public.agents set allowed_tools = '{test_refund}', approval_tools = '{test_refund}' where id = $1`, [agentId]);
    const runId = await createRun(admin, orgId, agentId, { input: 'Refund order 7' });
    stack.llm.enqueue({ kind: 'tool_calls', calls: [{ name: 'test_refund', arguments: '{"orderId":"7"}' }] });
    const run = await stack.temporal.client.workflow.start(agentRun, { taskQueue: stack.taskQueue, workflowId: agentRunWorkflowId(runId), args: [{ orgId, agentId, runId }] });

    await waitFor('the approval webhook', async () => receiver.received.length === 1);
    const approval = (await admin.query(`select id from public.run_approvals where run_id = $1`, [runId])).rows[0];
    const body = JSON.parse(receiver.received[0]!.body);
    expect(receiver.received[0]!.verified).toBe(true);
    expect(body).toMatchObject({ type: 'approval.requested', data: { runId, agentId, approvalId: approval.id, kind: 'approval', toolName: 'test_refund' } });
    expect((await admin.query(`select count(*)::int as n from public.webhook_deliveries where endpoint_id = $1`, [other.rows[0]!.id])).rows[0].n).toBe(0);
    expect((await admin.query(`select status from public.webhook_deliveries where endpoint_id = $1`, [endpointId])).rows[0].status).toBe('delivered');
    await run.terminate('test over');
  });
});
