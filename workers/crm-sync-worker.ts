import type { DataConverter, WorkerDeploymentVersion } from '@temporalio/common';
import { Worker, type NativeConnection, type WorkerOptions } from '@temporalio/worker';
import type pg from 'pg';
import { createCrmIntakeActivities, type AgentRunHandoff } from '../activities/crm-intake.js';
import { createCrmSyncActivities } from '../activities/crm-sync.js';
import { CredentialStore } from '../integrations/crm/credentials.js';
import { RateGovernor } from '../integrations/crm/governor.js';
import { crmSettingsFromConfig } from '../integrations/crm/settings.js';
import type { WorkerConfig } from '../lib/config.js';
import { keyringFromConfig } from '../lib/crypto.js';
import type { Logger } from '../lib/logger.js';
import { createDataConverter } from '../lib/temporal-codec.js';
import { workerObservability } from './observability.js';
import { workerDeploymentOptions } from './versioning.js';
import { CRM_SYNC_TASK_QUEUE } from '../workflows/crm-sync-ids.js';
import { workflowsPath } from './agent-runs-worker.js';

export interface CrmSyncWorkerDeps {
  connection: NativeConnection;
  namespace: string;
  pool: pg.Pool;
  credentials: CredentialStore;
  logger: Logger;
  workflowBundle?: WorkerOptions['workflowBundle'];
  taskQueue?: string;
  shutdownGraceTime?: WorkerOptions['shutdownGraceTime'];
  pageSize?: number;
  overlapMs?: number;
  /** Page budget of one page activity (see CrmSyncActivityDeps). */
  pagesPerActivity?: number;
  dataConverter?: DataConverter;
  /** Page activities in flight at once (different connections sync in parallel). */
  maxConcurrentActivityTaskExecutions?: number;
  /** Where webhook intake starts agent runs and posts lead messages (workers/run-handoff.ts); without it, this worker only syncs. */
  handoff?: AgentRunHandoff;
  /** Worker Deployment Versioning (workers/versioning.ts); unversioned without it. */
  deploymentVersion?: WorkerDeploymentVersion;
}

/** The `crm-sync` task queue: crmSync and crmIntake workflows and their activities. */
export async function createCrmSyncWorker(deps: CrmSyncWorkerDeps): Promise<Worker> {
  return Worker.create({
    connection: deps.connection,
    namespace: deps.namespace,
    taskQueue: deps.taskQueue ?? CRM_SYNC_TASK_QUEUE,
    ...(deps.workflowBundle ? { workflowBundle: deps.workflowBundle } : { workflowsPath }),
    activities: {
      ...createCrmSyncActivities({
        pool: deps.pool,
        credentials: deps.credentials,
        logger: deps.logger,
        ...(deps.pageSize ? { pageSize: deps.pageSize } : {}),
        ...(deps.overlapMs !== undefined ? { overlapMs: deps.overlapMs } : {}),
        ...(deps.pagesPerActivity !== undefined ? { pagesPerActivity: deps.pagesPerActivity } : {}),
      }),
      ...(deps.handoff ? createCrmIntakeActivities({ pool: deps.pool, credentials: deps.credentials, handoff: deps.handoff, logger: deps.logger }) : {}),
    },
    maxConcurrentActivityTaskExecutions: deps.maxConcurrentActivityTaskExecutions ?? 20,
    shutdownGraceTime: deps.shutdownGraceTime ?? '30 seconds',
    dataConverter: deps.dataConverter ?? createDataConverter(undefined),
    ...workerDeploymentOptions(deps.deploymentVersion),
    // Run ids on activity log lines, activity and workflow failures to Sentry (workers/observability.ts).
    ...workerObservability(),
  });
}

/**
 * The process's one credential store (and so one rate governor) from configuration, shared by
 * the sync worker and the agents' CRM tools; null without ENCRYPTION_KEYS.
 */
export function crmCredentialStoreFromConfig(config: WorkerConfig, pool: pg.Pool): CredentialStore | null {
  const keyring = keyringFromConfig(config);
  if (!keyring) return null;
  return new CredentialStore({ pool, keyring, settings: crmSettingsFromConfig(config), governor: new RateGovernor(pool) });
}

/** workers/main.ts: the crm-sync worker from configuration, or null (with a warning) without ENCRYPTION_KEYS. */
export async function startCrmSyncWorker(opts: {
  config: WorkerConfig;
  connection: NativeConnection;
  pool: pg.Pool;
  logger: Logger;
  dataConverter: DataConverter;
  credentials?: CredentialStore | null;
  handoff: AgentRunHandoff;
  deploymentVersion?: WorkerDeploymentVersion | undefined;
}): Promise<Worker | null> {
  const credentials = opts.credentials ?? crmCredentialStoreFromConfig(opts.config, opts.pool);
  if (!credentials) {
    opts.logger.warn('ENCRYPTION_KEYS is not set: CRM syncs are disabled in this worker');
    return null;
  }
  const worker = await createCrmSyncWorker({
    connection: opts.connection,
    namespace: opts.config.TEMPORAL_NAMESPACE,
    pool: opts.pool,
    credentials,
    logger: opts.logger,
    shutdownGraceTime: opts.config.WORKER_SHUTDOWN_GRACE_MS,
    dataConverter: opts.dataConverter,
    handoff: opts.handoff,
    ...(opts.deploymentVersion ? { deploymentVersion: opts.deploymentVersion } : {}),
  });
  opts.logger.info({ taskQueue: worker.options.taskQueue }, 'crm-sync worker started');
  return worker;
}
