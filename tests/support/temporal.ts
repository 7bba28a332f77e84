import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type LogLevel, type Worker } from '@temporalio/worker';
import type pg from 'pg';
import { LlmClient } from '../../integrations/llm/chat-completions.js';
import { createLogger } from '../../lib/logger.js';
import { createAgentRunsWorker } from '../../workers/agent-runs-worker.js';

function requireEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the suite with \`npm test\` (vitest globalSetup starts the stack)`);
  return value;
}

export interface TestTemporal {
  client: Client;
  nativeConnection: NativeConnection;
  namespace: string;
  close(): Promise<void>;
}

let runtimeInstalled = false;

export async function connectTestTemporal(): Promise<TestTemporal> {
  if (!runtimeInstalled) {
    // Expected failures (a rejected LLM request, a cancelled run) would otherwise print full
    // stack traces at WARN; TEST_TEMPORAL_LOG_LEVEL=INFO brings them back when debugging.
    Runtime.install({ logger: new DefaultLogger((process.env.TEST_TEMPORAL_LOG_LEVEL as LogLevel | undefined) ?? 'ERROR') });
    runtimeInstalled = true;
  }
  const address = requireEnv('TEST_TEMPORAL_ADDRESS');
  const namespace = requireEnv('TEST_TEMPORAL_NAMESPACE');
  const connection = await Connection.connect({ address });
  const nativeConnection = await NativeConnection.connect({ address });
  return {
    client: new Client({ connection, namespace }),
    nativeConnection,
    namespace,
    close: async () => {
      await connection.close();
      await nativeConnection.close();
    },
  };
}

/** A task queue of its own per test file, so parallel files never pick up each other's tasks. */
export function uniqueTaskQueue(prefix: string): string {
  return `${prefix}-${randomUUID()}`;
}

export const testLogger = createLogger({ name: 'test', level: process.env.TEST_LOG_LEVEL ?? 'silent' });

export async function createTestAgentWorker(opts: {
  temporal: TestTemporal;
  pool: pg.Pool;
  llmBaseUrl: string;
  taskQueue: string;
  llmTimeoutMs?: number;
}): Promise<Worker> {
  return createAgentRunsWorker({
    connection: opts.temporal.nativeConnection,
    namespace: opts.temporal.namespace,
    pool: opts.pool,
    llm: new LlmClient({ baseUrl: opts.llmBaseUrl, apiKey: 'test-llm-key', timeoutMs: opts.llmTimeoutMs ?? 10_000 }),
    logger: testLogger,
    taskQueue: opts.taskQueue,
    workflowBundle: { codePath: requireEnv('TEST_WORKFLOW_BUNDLE') },
    shutdownGraceTime: '2 seconds',
    heartbeatIntervalMs: 1_000,
  });
}
