import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type { WebhookDispatch } from '../activities/org-events/publish.js';
import { OrgIdSearchAttribute } from '../workflows/search-attributes.js';
import { AGENT_RUNS_TASK_QUEUE } from '../workflows/task-queues.js';
import { orgWebhookDelivery, webhookDeliveryWorkflowId } from '../workflows/webhook-delivery.js';

/**
 * How published org events reach Temporal: one `orgWebhookDelivery` per delivery row, by
 * business-key id, never twice (a delivery that finished is not started again: REJECT_DUPLICATE).
 * Deliveries run on the agent-runs queue, whose workers host their activities: they are short
 * HTTP calls, and the events they carry come mostly from agent runs.
 */
export function createWebhookDispatch(deps: { temporal: Client; taskQueue?: string; retrySchedule?: number[]; giveUpAfterSeconds?: number }): WebhookDispatch {
  return {
    async startDelivery(ref) {
      try {
        await deps.temporal.workflow.start(orgWebhookDelivery, {
          taskQueue: deps.taskQueue ?? AGENT_RUNS_TASK_QUEUE,
          workflowId: webhookDeliveryWorkflowId(ref.deliveryId),
          args: [
            {
              orgId: ref.orgId,
              deliveryId: ref.deliveryId,
              ...(deps.retrySchedule ? { retrySchedule: deps.retrySchedule } : {}),
              ...(deps.giveUpAfterSeconds ? { giveUpAfterSeconds: deps.giveUpAfterSeconds } : {}),
            },
          ],
          workflowIdConflictPolicy: 'USE_EXISTING',
          workflowIdReusePolicy: 'REJECT_DUPLICATE',
          typedSearchAttributes: [{ key: OrgIdSearchAttribute, value: ref.orgId }],
          staticSummary: `Webhook delivery ${ref.deliveryId}`,
        });
      } catch (err) {
        if (err instanceof WorkflowExecutionAlreadyStartedError) return;
        throw err;
      }
    },
  };
}
