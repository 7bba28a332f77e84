/**
 * A worker in its own process, for crash tests: the test SIGKILLs it mid-LLM-call, or it
 * SIGKILLs itself right after a side effect committed (CRASH_AFTER_EFFECT=1). Reads TEST_* from
 * the environment like the tests, plus CRASH_TASK_QUEUE, CRASH_LLM_URL and CRASH_EFFECT_URL.
 */
import { appPool } from './db.js';
import { httpEffectTool } from './effect-tool.js';
import { connectTestTemporal, createTestAgentWorker } from './temporal.js';
import { createToolRegistry } from '../../activities/tools/builtin.js';

const temporal = await connectTestTemporal();
const pool = appPool();
const crashAfterEffect = process.env.CRASH_AFTER_EFFECT === '1';
const worker = await createTestAgentWorker({
  temporal,
  pool,
  llmBaseUrl: process.env.CRASH_LLM_URL!,
  taskQueue: process.env.CRASH_TASK_QUEUE!,
  tools: createToolRegistry([
    httpEffectTool(process.env.CRASH_EFFECT_URL!, () => {
      if (crashAfterEffect) process.kill(process.pid, 'SIGKILL');
    }),
  ]),
});
process.stdout.write('crash-worker ready\n');
await worker.run();
