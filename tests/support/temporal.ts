import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import type { WorkerDeploymentVersion } from '@temporalio/common';
import { DefaultLogger, NativeConnection, Runtime, type LogLevel, type Logger as RuntimeLogger, type Worker } from '@temporalio/worker';
import { workerTelemetryOptions } from '../../workers/telemetry.js';
import type pg from 'pg';
import { LlmClient } from '../../integrations/llm/chat-completions.js';
import { createLogger } from '../../lib/logger.js';
import type { PriceTable } from '../../lib/pricing.js';
import type { SpendSettings } from '../../lib/spend.js';
import type { ToolRegistry } from '../../activities/tools/registry.js';
import type { CredentialStore } from '../../integrations/crm/credentials.js';
import { createAgentRunsWorker } from '../../workers/agent-runs-worker.js';
import { parseKeyring, type Keyring } from '../../lib/crypto.js';
import type { SsrfPolicy } from '../../lib/ssrf.js';
import { createDataConverter } from '../../lib/temporal-codec.js';

export function requireEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the suite with \`npm test\` (vitest globalSetup starts the stack)`);
  return value;
}

/**
 * The test suite's Temporal payload keyring: fixed (not a secret; it protects nothing but test
 * data) so the committed replay histories under tests/replay/histories decrypt on every machine.
 */
export const TEST_CODEC_KEYS = 'test-2026:dGVzdC1vbmx5LWNvZGVjLWtleS0zMi1ieXRlcy0wMDA=';
export const testDataConverter = createDataConverter(parseKeyring(TEST_CODEC_KEYS));

export interface TestTemporal {
  client: Client;
  nativeConnection: NativeConnection;
  namespace: string;
  close(): Promise<void>;
}

let runtimeInstalled = false;

/**
 * `runtime` applies only to the first call in a test file's process (the Runtime is installed
 * once): `logger` replaces the quiet default (log-capturing tests), `metricsBindAddress` turns on
 * the SDK's Prometheus exporter as workers/main.ts does.
 */
export async function connectTestTemporal(runtime: { logger?: RuntimeLogger; metricsBindAddress?: string } = {}): Promise<TestTemporal> {
  if (!runtimeInstalled) {
    // Expected failures (a rejected LLM request, a cancelled run) would otherwise print full
    // stack traces at WARN; TEST_TEMPORAL_LOG_LEVEL=INFO brings them back when debugging.
    Runtime.install({
      logger: runtime.logger ?? new DefaultLogger((process.env.TEST_TEMPORAL_LOG_LEVEL as LogLevel | undefined) ?? 'ERROR'),
      telemetryOptions: workerTelemetryOptions(runtime.metricsBindAddress),
    });
    runtimeInstalled = true;
  }
  const address = requireEnv('TEST_TEMPORAL_ADDRESS');
  const namespace = requireEnv('TEST_TEMPORAL_NAMESPACE');
  const connection = await Connection.connect({ address });
  const nativeConnection = await NativeConnection.connect({ address });
  return {
    client: new Client({ connection, namespace, dataConverter: testDataConverter }),
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
  /** Extra agent tools (e.g. a test tool with a side effect) besides the built-ins. */
  tools?: ToolRegistry;
  /** LLM prices for metering; default lib/pricing.ts. */
  prices?: PriceTable;
  /** The operator's spend ceilings; default lib/spend.ts. */
  spend?: SpendSettings;
  /** Worker Deployment Versioning, as workers/main.ts sets it from the environment. */
  deploymentVersion?: WorkerDeploymentVersion;
  /** CRM connections, for answers sent into a lead's CRM thread. */
  credentials?: CredentialStore;
  /** Webhook endpoint secrets, SSRF allowlist (fake receivers on loopback) and a short retry schedule. */
  webhooks?: { keyring?: Keyring; ssrf?: SsrfPolicy; retrySchedule?: number[]; giveUpAfterSeconds?: number };
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
    dataConverter: testDataConverter,
    ...(opts.tools ? { tools: opts.tools } : {}),
    ...(opts.prices ? { prices: opts.prices } : {}),
    ...(opts.spend ? { spend: opts.spend } : {}),
    ...(opts.deploymentVersion ? { deploymentVersion: opts.deploymentVersion } : {}),
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    ...(opts.webhooks?.keyring ? { keyring: opts.webhooks.keyring } : {}),
    ...(opts.webhooks?.ssrf ? { ssrf: opts.webhooks.ssrf } : {}),
    ...(opts.webhooks?.retrySchedule ? { webhookRetrySchedule: opts.webhooks.retrySchedule } : {}),
    ...(opts.webhooks?.giveUpAfterSeconds ? { webhookGiveUpAfterSeconds: opts.webhooks.giveUpAfterSeconds } : {}),
  });
}
