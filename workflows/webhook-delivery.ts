import { proxyActivities, sleep, workflowInfo } from '@temporalio/workflow';
import type { WebhookDeliveryActivities } from '../activities/org-events/deliver.js';

export interface WebhookDeliveryInput {
  orgId: string;
  deliveryId: string;
  /**
   * Seconds to wait after each failed attempt; the last value repeats. Default: the schedule the
   * Standard Webhooks specification gives as an example (5 s, 5 min, 30 min, 2 h, 5 h, 10 h).
   */
  retrySchedule?: number[];
  /** No attempt starts later than this after the event (default 24 h); tests shorten both. */
  giveUpAfterSeconds?: number;
}

export interface WebhookDeliveryResult {
  outcome: 'delivered' | 'failed' | 'gone';
  attempts: number;
}

export const DEFAULT_WEBHOOK_RETRY_SCHEDULE = [5, 300, 1800, 7200, 18000, 36000];
export const DEFAULT_WEBHOOK_GIVE_UP_AFTER_SECONDS = 24 * 3600;

/** One delivery of one org event to one endpoint: at most one execution per delivery, ever. */
export function webhookDeliveryWorkflowId(deliveryId: string): string {
  return `org-webhook-delivery:${deliveryId}`;
}

// An attempt is a short HTTP call plus two statements; Temporal retries only what is not an
// HTTP outcome (Postgres down, the worker died), for as long as the delivery may still happen.
const { attemptWebhookDelivery } = proxyActivities<WebhookDeliveryActivities>({
  startToCloseTimeout: '1 minute',
  scheduleToCloseTimeout: '1 hour',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
  summary: 'Deliver a signed org event',
});

/**
 * Delivers an org event to a webhook endpoint with backoff: each attempt is an activity that
 * logs itself (status code, error, next attempt); between attempts the workflow sleeps on a
 * durable timer, so a receiver that is down for hours gets the event when it comes back, across
 * worker restarts and deploys. Workflow id `org-webhook-delivery:<deliveryId>`.
 */
export async function orgWebhookDelivery(input: WebhookDeliveryInput): Promise<WebhookDeliveryResult> {
  const schedule = input.retrySchedule?.length ? input.retrySchedule : DEFAULT_WEBHOOK_RETRY_SCHEDULE;
  const giveUpAt = new Date(workflowInfo().startTime.getTime() + (input.giveUpAfterSeconds ?? DEFAULT_WEBHOOK_GIVE_UP_AFTER_SECONDS) * 1000).toISOString();
  for (let attempt = 1; ; attempt++) {
    const result = await attemptWebhookDelivery({
      orgId: input.orgId,
      deliveryId: input.deliveryId,
      attempt,
      retryInSeconds: schedule[Math.min(attempt - 1, schedule.length - 1)]!,
      giveUpAt,
    });
    if (result.outcome !== 'retry') return { outcome: result.outcome, attempts: attempt };
    await sleep(result.retryInSeconds * 1000);
  }
}
