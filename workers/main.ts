import { Client } from '@temporalio/client';
import { NativeConnection, Runtime } from '@temporalio/worker';
import { LlmClient } from '../integrations/llm/chat-completions.js';
import { createOrgLlmRoutes } from '../integrations/llm/org-provider.js';
import { createGuardedFetch } from '../lib/ssrf.js';
import { ConfigError, loadWorkerConfig, spendSettingsFrom, type WorkerConfig } from '../lib/config.js';
import { createPool } from '../lib/db.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { describeTemporalConnection, diagnoseTemporalConnection, temporalConnectionOptions } from '../lib/temporal.js';
import { WorkerHealth } from './health.js';
import { deploymentVersionFromConfig } from './versioning.js';
import { setMetricModels, startMetricsServer, trackDatabaseMetrics } from '../lib/metrics.js';
import { operatorModels } from '../lib/spend.js';
import { flushSentry, initSentry } from '../lib/sentry.js';
import { exitOnCrash } from '../lib/crash.js';
import { runtimeLogger, workerTelemetryOptions } from './telemetry.js';
import { codecKeyringFrom, createDataConverter } from '../lib/temporal-codec.js';
import { keyringFromConfig } from '../lib/crypto.js';
import { createAgentRunsWorker } from './agent-runs-worker.js';
import { parsePriceTable } from '../lib/pricing.js';
import { crmCredentialStoreFromConfig, startCrmSyncWorker } from './crm-sync-worker.js';
import { createToolRegistry, queryEmbedderOf } from '../activities/tools/builtin.js';
import { createCrmTools } from '../activities/tools/crm-tools.js';
import { createAgentRunHandoff } from './run-handoff.js';
import { deploymentEmbedder, startKnowledgeWorker } from './knowledge-worker.js';


/**
 * Connects to Temporal, retrying with backoff until it succeeds or the process is told to stop.
 * Meanwhile /readyz stays red with the reason, so a refused certificate shows in the pod's
 * status and the log instead of a crash loop that hides it.
 */
async function connectUntilStopped(config: WorkerConfig, health: WorkerHealth, logger: Logger): Promise<NativeConnection | undefined> {
  let stopping = false;
  let wake = () => {};
  const stop = () => {
    stopping = true;
    wake();
  };
  process.once('SIGTERM', stop).once('SIGINT', stop);
  logger.info({ temporal: describeTemporalConnection(config) }, 'connecting to Temporal');
  try {
    for (let attempt = 1; !stopping; attempt++) {
      try {
        return await NativeConnection.connect(temporalConnectionOptions(config));
      } catch (err) {
        // The SDK's "transport error" hides a refused certificate; the diagnosis names it.
        const diagnosis = await diagnoseTemporalConnection(config);
        health.connectFailed(err, diagnosis);
        const delayMs = Math.min(30_000, 1_000 * 2 ** Math.min(attempt - 1, 5));
        logger.error({ err, diagnosis, attempt, retryInMs: delayMs }, 'cannot connect to Temporal');
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    }
    logger.info('stopped before Temporal could be reached');
    return undefined;
  } finally {
    process.off('SIGTERM', stop).off('SIGINT', stop);
  }
}

async function main(): Promise<void> {
  const config = loadWorkerConfig();
  const logger = createLogger({ name: 'worker', level: config.LOG_LEVEL });
  const prices = parsePriceTable(config.LLM_PRICES);
  // Metrics name only the models the operator offers; any other name is `other`.
  setMetricModels(operatorModels(config.LLM_MODELS, prices));
  if (initSentry(config, 'worker')) logger.info('Sentry error reporting on');
  exitOnCrash(logger);

  // The SDK's own logs (workflow and activity context included) go through pino, so redaction
  // and the JSON format apply to them too. The Runtime also turns SIGINT/SIGTERM into a
  // graceful worker shutdown.
  Runtime.install({
    logger: runtimeLogger(logger, 'INFO'),
    telemetryOptions: workerTelemetryOptions(config.TEMPORAL_METRICS_BIND_ADDRESS ?? '127.0.0.1:9464'),
  });

  const pool = createPool(config.DATABASE_URL, { max: config.DATABASE_POOL_MAX, idleSeconds: config.DATABASE_POOL_IDLE_SECONDS, applicationName: 'worker', pipeline: config.DATABASE_PIPELINE, preparedStatements: config.DATABASE_PREPARED_STATEMENTS });
  trackDatabaseMetrics(pool);
  const health = new WorkerHealth(pool);
  const metrics = await startMetricsServer({ host: config.METRICS_HOST, port: config.METRICS_PORT ?? 9092, readiness: () => health.readiness() });
  logger.info({ metrics: metrics.url }, 'metrics and probes listening');
  const connection = await connectUntilStopped(config, health, logger);
  if (!connection) {
    await pool.end();
    await metrics.close();
    await flushSentry();
    return;
  }
  health.connected(connection);
  const deploymentVersion = deploymentVersionFromConfig(config);
  // One credential store (and rate governor) for syncs and the agents' CRM tools; both need ENCRYPTION_KEYS.
  const crmCredentials = crmCredentialStoreFromConfig(config, pool);
  // The deployment's embedding model (LLM_EMBEDDING_MODEL): ingestion embeds chunks, knowledge_search the query.
  const embedder = deploymentEmbedder(config);
  const llm = new LlmClient({
    baseUrl: config.LLM_BASE_URL,
    timeoutMs: config.LLM_TIMEOUT_MS,
    appTitle: 'gpt-agent-platform',
    ...(config.LLM_API_KEY ? { apiKey: config.LLM_API_KEY } : {}),
  });
  // Orgs that set their own provider (PUT /v1/orgs/:orgId/llm-provider) use it for runs, memory
  // and embeddings; the others use the deployment's. Their URLs are reached only through the guard.
  const providerFetch = createGuardedFetch({ allowedHosts: config.SSRF_ALLOWED_HOSTS ?? [] });
  const keyring = keyringFromConfig(config);
  const routes = createOrgLlmRoutes({ pool, keyring, fetch: providerFetch, deployment: { llm, embedder }, timeoutMs: config.LLM_TIMEOUT_MS });
  try {
    const worker = await createAgentRunsWorker({
      connection,
      namespace: config.TEMPORAL_NAMESPACE,
      pool,
      llm,
      routes,
      logger,
      shutdownGraceTime: config.WORKER_SHUTDOWN_GRACE_MS,
      dataConverter: createDataConverter(codecKeyringFrom(config)),
      prices,
      spend: spendSettingsFrom(config),
      ...(deploymentVersion ? { deploymentVersion } : {}),
      tools: createToolRegistry(crmCredentials ? createCrmTools({ credentials: crmCredentials }) : [], { embedQuery: queryEmbedderOf(routes) }),
      credentials: crmCredentials,
      keyring,
      ssrf: { allowedHosts: config.SSRF_ALLOWED_HOSTS ?? [] },
    });
    logger.info({ taskQueue: worker.options.taskQueue, temporal: config.TEMPORAL_ADDRESS, deploymentVersion: deploymentVersion ?? 'unversioned' }, 'worker started');
    // CRM syncs run on their own task queue in the same process; they need ENCRYPTION_KEYS.
    const dataConverter = createDataConverter(codecKeyringFrom(config));
    // Webhook intake starts runs and posts lead messages on the agent-runs queue through this client.
    const handoff = createAgentRunHandoff({ temporal: new Client({ connection, namespace: config.TEMPORAL_NAMESPACE, dataConverter }) });
    const crmWorker = await startCrmSyncWorker({ config, connection, pool, logger, dataConverter, credentials: crmCredentials, handoff, deploymentVersion });
    const knowledge = await startKnowledgeWorker({ config, connection, pool, logger, dataConverter, embedder, routes });
    try {
      const running = Promise.all([worker.run(), crmWorker?.run(), knowledge.worker.run()]);
      health.running(crmWorker ? [worker, crmWorker, knowledge.worker] : [worker, knowledge.worker]);
      await running;
    } finally {
      await knowledge.close();
    }
    logger.info('worker stopped');
  } finally {
    await connection.close();
    await providerFetch.close();
    await pool.end();
    await metrics.close();
    await flushSentry();
  }
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) {
    console.error(err.message);
  } else {
    console.error(err);
  }
  process.exit(1);
});
