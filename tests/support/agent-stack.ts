import type pg from 'pg';
import { startFakeLlm, type FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { adminPool, appPool } from './db.js';
import { connectTestTemporal, createTestAgentWorker, uniqueTaskQueue, type TestTemporal } from './temporal.js';

/** What an agent-run test works with: a worker polling `taskQueue` whose runs talk to `llm`. */
export interface AgentTestStack {
  temporal: TestTemporal;
  llm: FakeLlmServer;
  /** As the application role (RLS applies), the pool the worker uses too. */
  pool: pg.Pool;
  /** As the database owner, for arranging and inspecting rows. */
  admin: pg.Pool;
  taskQueue: string;
  close(): Promise<void>;
}

type WorkerOptions = Omit<Parameters<typeof createTestAgentWorker>[0], 'temporal' | 'pool' | 'llmBaseUrl' | 'taskQueue'>;

/**
 * Connects to the suite's Temporal server and database, starts a fake LLM and an agent worker
 * on a queue of its own (`name` plus a random suffix). `close()` stops them in reverse order.
 */
export async function startAgentTestStack(name: string, options: { worker?: WorkerOptions; poolMax?: number } = {}): Promise<AgentTestStack> {
  const temporal = await connectTestTemporal();
  const llm = await startFakeLlm();
  const pool = appPool(options.poolMax ? { max: options.poolMax } : {});
  const admin = adminPool();
  const taskQueue = uniqueTaskQueue(name);
  const running = await createTestAgentWorker({ temporal, pool, llmBaseUrl: llm.url, taskQueue, ...options.worker });
  const finished = running.run();
  return {
    temporal,
    llm,
    pool,
    admin,
    taskQueue,
    async close() {
      running.shutdown();
      await finished;
      await llm.close();
      await temporal.close();
      await pool.end();
      await admin.end();
    },
  };
}
