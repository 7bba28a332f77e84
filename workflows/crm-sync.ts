import {
  ActivityFailure,
  ApplicationFailure,
  ContinueAsNew,
  continueAsNew,
  defineQuery,
  patched,
  proxyActivities,
  setHandler,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { CrmSyncActivities, CrmSyncMode, SyncOutcome } from '../activities/crm-sync.js';
import { crmNonRetryableTypes } from '../activities/crm-failure-types.js';

export interface CrmSyncInput {
  orgId: string;
  connectionId: string;
  mode: CrmSyncMode;
  trigger?: 'manual' | 'schedule' | 'api';
  /** Set when continuing as new: the run row and checkpoints already exist. */
  resume?: { syncRunId: string; objectIndex: number };
  /** Tests force continue-as-new after this many pages in one execution. */
  continueAsNewAfterPages?: number;
  /** A page on a worker that died is retried elsewhere after this long (default 30; crash tests shorten it). */
  heartbeatTimeoutSeconds?: number;
}

export interface CrmSyncProgress {
  syncRunId: string | null;
  objectType: string | null;
  phase: string | null;
  pagesThisExecution: number;
}

export const crmSyncProgressQuery = defineQuery<CrmSyncProgress>('crmSyncProgress');

// Bookkeeping in Postgres: quick, retried until the database is back.
const bookkeeping = proxyActivities<CrmSyncActivities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 30, nonRetryableErrorTypes: crmNonRetryableTypes },
});

// One page: a provider request (through the shared rate governor) and one upsert transaction.
// 429s and 5xx retry after the provider's wait (nextRetryDelay); auth and validation stop the sync.
// The page activity heartbeats, so a dead worker's page moves on after the heartbeat timeout.
const pageActivities = (heartbeatTimeoutSeconds: number) =>
  proxyActivities<CrmSyncActivities>({
    startToCloseTimeout: '2 minutes',
    heartbeatTimeout: heartbeatTimeoutSeconds * 1000,
    retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 25, nonRetryableErrorTypes: crmNonRetryableTypes },
  });

/**
 * Syncs one CRM connection into public.crm_records: pipelines, users, companies, contacts and
 * deals, in that order. Workflow id `crm-sync:<connectionId>`, so one sync per connection.
 * Incremental mode reads changes since each type's watermark (with an overlap) and the
 * provider's deletion feed; full mode reads everything and tombstones what it did not see.
 * The history holds ids and counts only; records go straight from activity to Postgres.
 */
export async function crmSync(input: CrmSyncInput): Promise<SyncOutcome> {
  const ref = { orgId: input.orgId, connectionId: input.connectionId };
  const pages = pageActivities(input.heartbeatTimeoutSeconds ?? 30);
  const progress: CrmSyncProgress = { syncRunId: input.resume?.syncRunId ?? null, objectType: null, phase: null, pagesThisExecution: 0 };
  setHandler(crmSyncProgressQuery, () => progress);

  const syncRunId = input.resume?.syncRunId ?? uuid4();
  progress.syncRunId = syncRunId;
  const types = ['pipelines', 'users', 'companies', 'contacts', 'deals'] as const;
  if (!input.resume) {
    await bookkeeping.beginCrmSync({ ...ref, syncRunId, mode: input.mode, trigger: input.trigger ?? 'manual', workflowId: workflowInfo().workflowId });
  }

  try {
    for (let i = input.resume?.objectIndex ?? 0; i < types.length; i++) {
      const objectType = types[i]!;
      progress.objectType = objectType;
      for (;;) {
        const page = await pages.syncCrmPage({ ...ref, syncRunId, mode: input.mode, objectType });
        progress.phase = page.phase;
        progress.pagesThisExecution++;
        if (page.done) break;
        if (workflowInfo().continueAsNewSuggested || progress.pagesThisExecution >= (input.continueAsNewAfterPages ?? 2_000)) {
          return await continueAsNew<typeof crmSync>({ ...input, resume: { syncRunId, objectIndex: i } });
        }
      }
    }
  } catch (err) {
    // Continuing as new is how a long sync goes on, not a failure: recording it as one wrote
    // `failed` on a sync that later completed. Histories from before the fix replay without it.
    if (err instanceof ContinueAsNew && patched('crm-sync-continue-as-new-is-not-a-failure')) throw err;
    const cause = err instanceof ActivityFailure && err.cause instanceof ApplicationFailure ? err.cause : err;
    const type = cause instanceof ApplicationFailure ? (cause.type ?? 'Error') : 'Error';
    const message = cause instanceof Error ? cause.message : String(cause);
    await bookkeeping.completeCrmSync({ ...ref, syncRunId, error: { type, message: message.slice(0, 500) } });
    throw err;
  }
  return bookkeeping.completeCrmSync({ ...ref, syncRunId });
}
