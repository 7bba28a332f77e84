import type { DataConverter } from '@temporalio/common';
import { Worker, type NativeConnection, type WorkerOptions } from '@temporalio/worker';
import type pg from 'pg';
import { createKnowledgeActivities, type KnowledgeActivityDeps } from '../activities/knowledge/ingest.js';
import { createKnowledgeRefreshActivities } from '../activities/knowledge/refresh.js';
import { EmbeddingsClient, type Embedder } from '../integrations/llm/embeddings.js';
import type { LlmRoutes } from '../integrations/llm/org-provider.js';
import type { WorkerConfig } from '../lib/config.js';
import type { Logger } from '../lib/logger.js';
import { createGuardedFetch } from '../lib/ssrf.js';
import { createDataConverter } from '../lib/temporal-codec.js';
import { KNOWLEDGE_TASK_QUEUE } from '../workflows/knowledge-ids.js';
import { workflowsPath } from './agent-runs-worker.js';
import { workerObservability } from './observability.js';

export interface KnowledgeWorkerDeps extends Omit<KnowledgeActivityDeps, 'fetchUrl'> {
  connection: NativeConnection;
  namespace: string;
  workflowBundle?: WorkerOptions['workflowBundle'];
  taskQueue?: string;
  shutdownGraceTime?: WorkerOptions['shutdownGraceTime'];
  dataConverter?: DataConverter;
  /** Hosts customer URLs may reach although internal (tests' local pages); empty in production. */
  ssrfAllowedHosts?: readonly string[];
}

/** The `knowledge` task queue: knowledgeIngest and knowledgeRefresh workflows and their activities. */
export async function createKnowledgeWorker(deps: KnowledgeWorkerDeps): Promise<{ worker: Worker; close(): Promise<void> }> {
  const fetchUrl = createGuardedFetch({ allowedHosts: deps.ssrfAllowedHosts ?? [] });
  const worker = await Worker.create({
    connection: deps.connection,
    namespace: deps.namespace,
    taskQueue: deps.taskQueue ?? KNOWLEDGE_TASK_QUEUE,
    ...(deps.workflowBundle ? { workflowBundle: deps.workflowBundle } : { workflowsPath }),
    activities: { ...createKnowledgeActivities({ ...deps, fetchUrl }), ...createKnowledgeRefreshActivities({ ...deps, fetchUrl }) },
    // Each extraction is a thread with its own heap cap: a few at a time bound the process's memory.
    maxConcurrentActivityTaskExecutions: 4,
    shutdownGraceTime: deps.shutdownGraceTime ?? '30 seconds',
    dataConverter: deps.dataConverter ?? createDataConverter(undefined),
    ...workerObservability(),
  });
  return { worker, close: () => fetchUrl.close() };
}

/** The deployment's embedding model, from LLM_EMBEDDING_MODEL, for orgs without their own provider; undefined without it. */
export function deploymentEmbedder(config: WorkerConfig): Embedder | undefined {
  if (!config.LLM_EMBEDDING_MODEL) return undefined;
  return new EmbeddingsClient({
    baseUrl: config.LLM_BASE_URL,
    model: config.LLM_EMBEDDING_MODEL,
    timeoutMs: config.LLM_TIMEOUT_MS,
    ...(config.LLM_API_KEY ? { apiKey: config.LLM_API_KEY } : {}),
  });
}

export async function startKnowledgeWorker(opts: {
  config: WorkerConfig;
  connection: NativeConnection;
  pool: pg.Pool;
  logger: Logger;
  dataConverter: DataConverter;
  /** The deployment's embedder, for the log line; orgs' own are chosen per document by `routes`. */
  embedder?: Embedder | undefined;
  routes: LlmRoutes;
}) {
  const { embedder, routes } = opts;
  const started = await createKnowledgeWorker({
    connection: opts.connection,
    namespace: opts.config.TEMPORAL_NAMESPACE,
    pool: opts.pool,
    shutdownGraceTime: opts.config.WORKER_SHUTDOWN_GRACE_MS,
    dataConverter: opts.dataConverter,
    ssrfAllowedHosts: opts.config.SSRF_ALLOWED_HOSTS,
    embedderFor: (orgId) => routes.embedderFor(orgId),
  });
  opts.logger.info({ taskQueue: started.worker.options.taskQueue, embeddingModel: embedder?.model ?? null }, 'knowledge worker started');
  return started;
}
