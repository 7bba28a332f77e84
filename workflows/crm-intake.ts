import { ActivityFailure, ApplicationFailure, condition, continueAsNew, defineSignal, isCancellation, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { CrmIntakeActivities } from '../activities/crm-intake.js';
import { crmNonRetryableTypes } from '../activities/crm-failure-types.js';

export interface CrmIntakeInput {
  orgId: string;
  connectionId: string;
  /** The workflow ends after this long without a delivery (default 10 minutes); the next one starts it again. */
  idleSeconds?: number;
  /** A batch on a worker that died is retried elsewhere after this long (default 30; crash tests shorten it). */
  heartbeatTimeoutSeconds?: number;
}

/** The API recorded deliveries for this connection; sent with signal-with-start. Carries nothing: Postgres is the queue. */
export const deliveriesRecordedSignal = defineSignal('crmDeliveriesRecorded');

/** After a connection-level failure (revoked token, disabled connection) the workflow looks again this often… */
const RETRY_AFTER_FAILURE_MS = 5 * 60_000;
/** …and gives up after this many failures in a row; the deliveries stay recorded and the next delivery retries them. */
const MAX_CONSECUTIVE_FAILURES = 6;

/**
 * Drains the connection's recorded webhook deliveries (public.crm_webhook_deliveries, oldest
 * first): re-reads changed records from the CRM, upserts them, evaluates agent triggers and
 * starts runs or posts the lead's message into its conversation. The activity retries 429s and
 * 5xx without limit (a CRM that is down holds the queue, it does not lose it); connection-level
 * failures wait for the next delivery or a timer. Workflow id `crm-intake:<connectionId>`.
 */
export async function crmIntake(input: CrmIntakeInput): Promise<{ batches: number }> {
  const intake = proxyActivities<CrmIntakeActivities>({
    startToCloseTimeout: '2 minutes',
    heartbeatTimeout: (input.heartbeatTimeoutSeconds ?? 30) * 1000,
    retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', nonRetryableErrorTypes: crmNonRetryableTypes },
    summary: 'Process recorded webhook deliveries',
  });
  const ref = { orgId: input.orgId, connectionId: input.connectionId };
  // Started by signal-with-start (or continued as new): there may be work already.
  let wake = true;
  setHandler(deliveriesRecordedSignal, () => {
    wake = true;
  });
  let batches = 0;
  let failures = 0;
  for (;;) {
    const woken = await condition(() => wake, failures > 0 ? RETRY_AFTER_FAILURE_MS : (input.idleSeconds ?? 600) * 1000);
    if (!woken && failures === 0) return { batches };
    wake = false;
    try {
      for (;;) {
        const batch = await intake.processPendingDeliveries(ref);
        batches += 1;
        if (batch.remaining === 0) break;
      }
      failures = 0;
    } catch (err) {
      if (isCancellation(err)) throw err;
      const cause = err instanceof ActivityFailure ? err.cause : err;
      if (!(cause instanceof ApplicationFailure)) throw err;
      failures += 1;
      if (failures >= MAX_CONSECUTIVE_FAILURES) return { batches };
    }
    if (workflowInfo().continueAsNewSuggested || batches >= 1_000) {
      return await continueAsNew<typeof crmIntake>(input);
    }
  }
}
