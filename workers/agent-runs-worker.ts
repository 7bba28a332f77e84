import { fileURLToPath } from 'node:url';
import { Client } from '@temporalio/client';
import type { DataConverter, WorkerDeploymentVersion } from '@temporalio/common';
import type { NativeConnection} from '@temporalio/worker';
import { Worker, type WorkerOptions } from '@temporalio/worker';
import type pg from 'pg';
import { createAgentRunActivities } from '../activities/agent-run/index.js';
import { createWebhookDeliveryActivities } from '../activities/org-events/deliver.js';
import { createOrgEventPublisher } from '../activities/org-events/publish.js';
import type { Keyring } from '../lib/crypto.js';
import { createGuardedFetch, type SsrfPolicy } from '../lib/ssrf.js';
import { createWebhookDispatch } from './webhook-dispatch.js';
import type { PriceTable } from '../lib/pricing.js';
import type { SpendSettings } from '../lib/spend.js';
import type { ToolRegistry } from '../activities/tools/registry.js';
import { createToolRegistry, queryEmbedderOf } from '../activities/tools/builtin.js';
import type { LlmClient } from '../integrations/llm/chat-completions.js';
import { createOrgLlmRoutes, type LlmRoutes } from '../integrations/llm/org-provider.js';
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
  /** The deployment's model (LLM_BASE_URL/LLM_API_KEY). */
  llm: LlmClient;
  /**
   * Routes each org's calls to its own provider when it set one. Default: the orgs' providers
   * read with `keyring` and reached through the SSRF guard with `ssrf`, `llm` for the others.
   */
  routes?: LlmRoutes;
  /** The timeout of calls to an org's own provider in the default `routes` (LLM_TIMEOUT_MS; default 120 s). */
  llmTimeoutMs?: number;
  logger: Logger;
  /** A prebuilt bundle (tests build it once per suite); otherwise the worker bundles `workflowsPath` at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  taskQueue?: string;
  /** In-flight activities get this long to finish on shutdown before they are cancelled. */
  shutdownGraceTime?: WorkerOptions['shutdownGraceTime'];
  heartbeatIntervalMs?: number;
  /** Tools agents may call (default: the built-ins, knowledge_search embedding with each org's model of `routes`). */
  tools?: ToolRegistry;
  /** LLM prices per model for metering (default: lib/pricing.ts). */
  prices?: PriceTable;
  /** The operator's spend ceilings (default: lib/spend.ts DEFAULT_SPEND_SETTINGS). */
  spend?: SpendSettings;
  /** Opens CRM connections, for answers sent into a lead's CRM thread. */
  credentials?: CredentialStore | null;
  /** `createDataConverter(keyring)`: payload encryption and encoded failures; the client must use the same. */
  dataConverter?: DataConverter;
  /** Worker Deployment Versioning (workers/versioning.ts); unversioned without it. */
  deploymentVersion?: WorkerDeploymentVersion;
  /** Opens webhook endpoint secrets and orgs' LLM keys (ENCRYPTION_KEYS); without it those fail with a clear error. */
  keyring?: Keyring | undefined;
  /** SSRF allowlist for webhook endpoints and orgs' LLM providers (SSRF_ALLOWED_HOSTS); empty in production. */
  ssrf?: SsrfPolicy;
  /** Webhook retry timing (workflows/webhook-delivery.ts); tests shorten it. */
  webhookRetrySchedule?: number[];
  webhookGiveUpAfterSeconds?: number;
}

/** The `agent-runs` task queue's worker; its SSRF-guarded fetch is closed when `run()` ends (after `shutdown()`). */
export async function createAgentRunsWorker(deps: AgentRunsWorkerDeps): Promise<Worker> {
  const taskQueue = deps.taskQueue ?? AGENT_RUNS_TASK_QUEUE;
  const dataConverter = deps.dataConverter ?? createDataConverter(undefined);
  // Org events (approval.requested, run.failed…) start their webhook deliveries on this queue.
  const events = createOrgEventPublisher({
    pool: deps.pool,
    dispatch: createWebhookDispatch({
      temporal: new Client({ connection: deps.connection, namespace: deps.namespace, dataConverter }),
      taskQueue,
      ...(deps.webhookRetrySchedule ? { retrySchedule: deps.webhookRetrySchedule } : {}),
      ...(deps.webhookGiveUpAfterSeconds ? { giveUpAfterSeconds: deps.webhookGiveUpAfterSeconds } : {}),
    }),
  });
  // Customer-supplied URLs (webhook endpoints, orgs' LLM providers) are reached only through this.
  const guardedFetch = createGuardedFetch(deps.ssrf ?? {});
  const routes =
    deps.routes ??
    createOrgLlmRoutes({ pool: deps.pool, keyring: deps.keyring, fetch: guardedFetch, deployment: { llm: deps.llm }, timeoutMs: deps.llmTimeoutMs ?? 120_000 });
  let worker: Worker;
  try {
    worker = await Worker.create({
      connection: deps.connection,
      namespace: deps.namespace,
      taskQueue,
      ...(deps.workflowBundle ? { workflowBundle: deps.workflowBundle } : { workflowsPath }),
      activities: {
        ...createWebhookDeliveryActivities({ pool: deps.pool, keyring: deps.keyring, fetch: guardedFetch }),
        ...createAgentRunActivities({
          pool: deps.pool,
          llm: deps.llm,
          routes,
          logger: deps.logger,
          ...(deps.heartbeatIntervalMs ? { heartbeatIntervalMs: deps.heartbeatIntervalMs } : {}),
          tools: deps.tools ?? createToolRegistry([], { embedQuery: queryEmbedderOf(routes) }),
          ...(deps.prices ? { prices: deps.prices } : {}),
          ...(deps.spend ? { spend: deps.spend } : {}),
          credentials: deps.credentials ?? null,
          events,
        }),
      },
      shutdownGraceTime: deps.shutdownGraceTime ?? '30 seconds',
      dataConverter,
      ...workerDeploymentOptions(deps.deploymentVersion),
      // Run ids on activity log lines, activity and workflow failures to Sentry (workers/observability.ts).
      ...workerObservability(),
    });
  } catch (err) {
    await guardedFetch.close();
    throw err;
  }
  // The guarded fetch's connection pool (keep-alive sockets to customers' endpoints and
  // providers) lives as long as the worker: it is closed once run() settles, which is after
  // shutdown() has let in-flight activities finish, so no delivery loses its connection.
  const run = worker.run.bind(worker);
  return Object.assign(worker, {
    async run() {
      try {
        await run();
      } finally {
        await guardedFetch.close();
      }
    },
  });
}
