import { DefaultLogger, NativeConnection, Runtime, type LogLevel } from '@temporalio/worker';
import { LlmClient } from '../integrations/llm/chat-completions.js';
import { ConfigError, loadWorkerConfig } from '../lib/config.js';
import { createPool } from '../lib/db.js';
import { createLogger } from '../lib/logger.js';
import { createAgentRunsWorker } from './agent-runs-worker.js';

const pinoLevels: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
};

async function main(): Promise<void> {
  const config = loadWorkerConfig();
  const logger = createLogger({ name: 'worker', level: config.LOG_LEVEL });

  // The SDK's own logs (workflow and activity context included) go through pino, so redaction
  // and the JSON format apply to them too. The Runtime also turns SIGINT/SIGTERM into a
  // graceful worker shutdown.
  Runtime.install({
    logger: new DefaultLogger('INFO', (entry) => {
      logger[pinoLevels[entry.level]]({ ...entry.meta }, entry.message);
    }),
  });

  const pool = createPool(config.DATABASE_URL, { max: config.DATABASE_POOL_MAX, applicationName: 'worker' });
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  try {
    const worker = await createAgentRunsWorker({
      connection,
      namespace: config.TEMPORAL_NAMESPACE,
      pool,
      llm: new LlmClient({
        baseUrl: config.LLM_BASE_URL,
        timeoutMs: config.LLM_TIMEOUT_MS,
        appTitle: 'gpt-agent-platform',
        ...(config.LLM_API_KEY ? { apiKey: config.LLM_API_KEY } : {}),
      }),
      logger,
      shutdownGraceTime: config.WORKER_SHUTDOWN_GRACE_MS,
    });
    logger.info({ taskQueue: worker.options.taskQueue, temporal: config.TEMPORAL_ADDRESS }, 'worker started');
    await worker.run();
    logger.info('worker stopped');
  } finally {
    await connection.close();
    await pool.end();
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
