import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Worker } from '@temporalio/worker';
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { encryptSecret, generateKeySpec, parseKeyring } from '../../lib/crypto.js';
import { WEBHOOK_SECRET_COLUMN } from '../../lib/org-events.js';
import { generateWebhookSecret } from '../../lib/standard-webhooks.js';
import { orgWebhookDelivery, webhookDeliveryWorkflowId } from '../../workflows/webhook-delivery.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';
import { connectTestTemporal, createTestAgentWorker, uniqueTaskQueue, type TestTemporal } from '../support/temporal.js';

/**
 * The agent-runs worker reaches customers' webhook endpoints through its own SSRF-guarded fetch,
 * whose pool keeps connections alive between deliveries. Stopping the worker closes that pool:
 * the endpoint sees its connection end when the worker's run() returns, not when keep-alive runs out.
 */
const keyring = parseKeyring(generateKeySpec('worker-close'));
let temporal: TestTemporal;
let pool: pg.Pool;
let admin: pg.Pool;
let endpoint: Server;
let endpointUrl: string;

beforeAll(async () => {
  temporal = await connectTestTemporal();
  pool = appPool();
  admin = adminPool();
  endpoint = createServer((_req, res) => void res.writeHead(204).end());
  // Tells the client to keep the connection for a minute: only closing the pool ends it sooner.
  endpoint.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
  endpointUrl = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/hooks`;
});

afterAll(async () => {
  endpoint?.closeAllConnections();
  await new Promise((resolve) => endpoint?.close(resolve));
  await temporal?.close();
  await pool?.end();
  await admin?.end();
});

const openConnections = () => new Promise<number>((resolve, reject) => endpoint.getConnections((err, n) => (err ? reject(err) : resolve(n))));

it('closes the guarded fetch pool when the worker stops: no connection to an endpoint stays open', async () => {
  const taskQueue = uniqueTaskQueue('worker-close');
  const worker: Worker = await createTestAgentWorker({
    temporal,
    pool,
    llmBaseUrl: 'http://127.0.0.1:9',
    taskQueue,
    webhooks: { keyring, ssrf: { allowedHosts: [new URL(endpointUrl).host] } },
  });
  const running = worker.run();

  const { orgId } = await createOrgWithMembers(admin, ['owner']);
  const endpointId = randomUUID();
  await admin.query(`insert into public.webhook_endpoints (id, org_id, url, secret) values ($1, $2, $3, $4)`, [
    endpointId,
    orgId,
    endpointUrl,
    encryptSecret(keyring, generateWebhookSecret(), { orgId, rowId: endpointId, column: WEBHOOK_SECRET_COLUMN }),
  ]);
  const eventId = randomUUID();
  await admin.query(`insert into public.org_events (id, org_id, seq, type) values ($1, $2, 1, 'run.failed')`, [eventId, orgId]);
  const { rows } = await admin.query<{ id: string }>(`insert into public.webhook_deliveries (org_id, endpoint_id, event_id) values ($1, $2, $3) returning id`, [orgId, endpointId, eventId]);
  const deliveryId = rows[0]!.id;

  const result = await temporal.client.workflow.execute(orgWebhookDelivery, { taskQueue, workflowId: webhookDeliveryWorkflowId(deliveryId), args: [{ orgId, deliveryId }] });
  expect(result).toEqual({ outcome: 'delivered', attempts: 1 });
  // The delivery's connection is kept alive in the worker's pool.
  expect(await openConnections()).toBe(1);

  worker.shutdown();
  await running;
  const deadline = Date.now() + 5_000;
  while ((await openConnections()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(await openConnections()).toBe(0);
});
