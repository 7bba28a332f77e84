import { Worker } from '@temporalio/worker';
import { createWebhookDeliveryActivities } from '../../../activities/org-events/deliver.js';
import { encryptSecret, generateKeySpec, parseKeyring } from '../../../lib/crypto.js';
import { createGuardedFetch, type GuardedFetch } from '../../../lib/ssrf.js';
import { generateWebhookSecret } from '../../../lib/standard-webhooks.js';
import { startWebhookReceiver, type WebhookReceiver } from '../../fakes/webhook-receiver.js';
import { createOrgWithMembers } from '../../support/db.js';
import { testDataConverter } from '../../support/temporal.js';
import type { ReplayScenario, ScenarioContext, ScenarioModule } from '../scenario.js';

const keyring = parseKeyring(generateKeySpec('replay'));
let receiver: WebhookReceiver | undefined;
let fetch: GuardedFetch | undefined;

export async function startWorkers(ctx: ScenarioContext) {
  receiver = await startWebhookReceiver();
  fetch = createGuardedFetch({ allowedHosts: [new URL(receiver.url).host] });
  const worker = await Worker.create({
    connection: ctx.temporal.nativeConnection,
    namespace: ctx.temporal.namespace,
    taskQueue: ctx.taskQueue,
    workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
    activities: createWebhookDeliveryActivities({ pool: ctx.pool, keyring, fetch }),
    dataConverter: testDataConverter,
    shutdownGraceTime: '2 seconds',
  });
  return [worker];
}

export async function close() {
  await fetch?.close();
  await receiver?.close();
}

/** An event of a new org and its delivery to an endpoint at the fake receiver, as the publisher records them. */
async function deliver(ctx: ScenarioContext, downForMs: number) {
  const { orgId } = await createOrgWithMembers(ctx.admin, ['owner']);
  const secret = generateWebhookSecret();
  const endpoint = await ctx.admin.query<{ id: string }>(`insert into public.webhook_endpoints (org_id, url, secret) values ($1, $2, 'v1.pending') returning id`, [orgId, receiver!.url]);
  const endpointId = endpoint.rows[0]!.id;
  await ctx.admin.query(`update public.webhook_endpoints set secret = $2 where id = $1`, [endpointId, encryptSecret(keyring, secret, { orgId, rowId: endpointId, column: 'webhook_endpoints.secret' })]);
  const event = await ctx.admin.query<{ id: string }>(`insert into public.org_events (id, org_id, seq, type, payload) values (gen_random_uuid(), $1, 1, 'run.failed', '{}') returning id`, [orgId]);
  const delivery = await ctx.admin.query<{ id: string }>(`insert into public.webhook_deliveries (org_id, endpoint_id, event_id) values ($1, $2, $3) returning id`, [orgId, endpointId, event.rows[0]!.id]);
  const deliveryId = delivery.rows[0]!.id;
  receiver!.secret = secret;
  receiver!.mode = downForMs > 0 ? 'down' : 'up';
  if (downForMs > 0) setTimeout(() => (receiver!.mode = 'up'), downForMs);
  const workflowId = `org-webhook-delivery:${deliveryId}`;
  const handle = await ctx.temporal.client.workflow.start('orgWebhookDelivery', {
    taskQueue: ctx.taskQueue,
    workflowId,
    args: [{ orgId, deliveryId, retrySchedule: [1], giveUpAfterSeconds: 30 }],
  });
  await handle.result();
  return workflowId;
}

export const scenarios: ReplayScenario[] = [
  {
    workflowType: 'orgWebhookDelivery',
    path: 'delivered-first-attempt',
    description: 'an org event is delivered, signed, on the first attempt',
    run: (ctx) => deliver(ctx, 0),
  },
  {
    workflowType: 'orgWebhookDelivery',
    path: 'delivered-after-outage',
    description: 'the receiver is down for a while; attempts are logged and the event arrives after a durable timer',
    run: (ctx) => deliver(ctx, 1_500),
  },
];

void ({ scenarios, startWorkers, close } satisfies ScenarioModule);
