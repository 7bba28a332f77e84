import { fileURLToPath } from 'node:url';
import type { NativeConnection} from '@temporalio/worker';
import { Worker, type WorkerOptions } from '@temporalio/worker';
import type pg from 'pg';
import { createAgentRunActivities } from '../activities/agent-run.js';
import type { LlmClient } from '../integrations/llm/chat-completions.js';
import type { Logger } from '../lib/logger.js';
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
    }),
    shutdownGraceTime: deps.shutdownGraceTime ?? '30 seconds',
  });
}
