import { fileURLToPath } from 'node:url';
import type { DataConverter, WorkerDeploymentVersion } from '@temporalio/common';
import type { NativeConnection} from '@temporalio/worker';
import { Worker, type WorkerOptions } from '@temporalio/worker';
import type pg from 'pg';
import { createAgentRunActivities } from '../activities/agent-run/index.js';
import type { PriceTable } from '../activities/pricing.js';
import type { ToolRegistry } from '../activities/tools/registry.js';
import type { LlmClient } from '../integrations/llm/chat-completions.js';
import type { CredentialStore } from '../integrations/crm/credentials.js';
import type { Logger } from '../lib/logger.js';
import { createDataConverter } from '../lib/temporal-codec.js';
import { workerObservability } from './observability.js';
import { workerDeploymentOptions } from './versioning.js';
import { AGENT_RUNS_TASK_QUEUE } from '../workflows/task-queues.js';

export const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

export interface AgentRunsWorkerDeps {
  connection: NativeConnection;
  namespace: string;
  pool: pg.Pool;
  llm: LlmClient;
  logger: Logger;
  /** A prebuilt bundle (tests build it once per suite); otherwise the worker bundles `workflowsPath` at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  taskQueue?: string;
  /** In-flight activities get this long to finish on shutdown before they are cancelled. */
  shutdownGraceTime?: WorkerOptions['shutdownGraceTime'];
  heartbeatIntervalMs?: number;
  /** Tools agents may call (default: the built-ins, see activities/tools/builtin.ts). */
  tools?: ToolRegistry;
  /** LLM prices per model for metering (default: activities/pricing.ts). */
  prices?: PriceTable;
  /** Opens CRM connections, for answers sent into a lead's CRM thread. */
  credentials?: CredentialStore | null;
  /** `createDataConverter(keyring)`: payload encryption and encoded failures; the client must use the same. */
  dataConverter?: DataConverter;
  /** Worker Deployment Versioning (workers/versioning.ts); unversioned without it. */
  deploymentVersion?: WorkerDeploymentVersion;
}

export async function createAgentRunsWorker(deps: AgentRunsWorkerDeps): Promise<Worker> {
  return Worker.create({
    connection: deps.connection,
    namespace: deps.namespace,
    taskQueue: deps.taskQueue ?? AGENT_RUNS_TASK_QUEUE,
    ...(deps.workflowBundle ? { workflowBundle: deps.workflowBundle } : { workflowsPath }),
    activities: createAgentRunActivities({
      pool: deps.pool,
      llm: deps.llm,
      logger: deps.logger,
      ...(deps.heartbeatIntervalMs ? { heartbeatIntervalMs: deps.heartbeatIntervalMs } : {}),
      ...(deps.tools ? { tools: deps.tools } : {}),
      ...(deps.prices ? { prices: deps.prices } : {}),
      credentials: deps.credentials ?? null,
    }),
    shutdownGraceTime: deps.shutdownGraceTime ?? '30 seconds',
    dataConverter: deps.dataConverter ?? createDataConverter(undefined),
    ...workerDeploymentOptions(deps.deploymentVersion),
    // Run ids on activity log lines, activity and workflow failures to Sentry (workers/observability.ts).
    ...workerObservability(),
  });
}
