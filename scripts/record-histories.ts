/**
 * `npm run replay:record [-- <workflowType>[/<path>] …]`: (re)generates the committed replay
 * fixtures under tests/replay/histories/<workflowType>/<path>.json by running every scenario in
 * tests/replay/scenarios/ against the test stack (real Temporal dev server and Postgres, the
 * fake LLM and CRMs), exactly as `npm test` starts it.
 *
 * Re-record after an intentional, patched() change of workflow code; never to make a failing
 * replay test pass (that failure means running workflows would break on deploy).
 * Histories are stored encrypted with the suite's fixed test keyring (TEST_CODEC_KEYS), as
 * production histories are encrypted; the replay test decodes them with it.
 */
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Worker } from '@temporalio/worker';
import setupTestStack from '../tests/support/global-setup.js';
import { startFakeLlm } from './stack/sandbox-llm.js';
import { adminPool, appPool } from '../tests/support/db.js';
import { connectTestTemporal, uniqueTaskQueue } from '../tests/support/temporal.js';
import type { ScenarioContext, ScenarioModule } from '../tests/replay/scenario.js';
import { historyToFixture } from '../workers/replay.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const scenariosDir = path.join(root, 'tests', 'replay', 'scenarios');
const historiesDir = path.join(root, 'tests', 'replay', 'histories');

async function main(): Promise<void> {
  const only = process.argv.slice(2);
  const teardown = await setupTestStack();
  const temporal = await connectTestTemporal();
  const llm = await startFakeLlm();
  const admin = adminPool();
  const pool = appPool();
  const workers: Worker[] = [];
  const running: Promise<void>[] = [];
  const modules: ScenarioModule[] = [];
  try {
    for (const file of (await readdir(scenariosDir)).filter((f) => f.endsWith('.ts')).sort()) {
      modules.push((await import(pathToFileURL(path.join(scenariosDir, file)).href)) as ScenarioModule);
    }
    // Each module gets its own task queue: a worker only runs the activities of its own module.
    const contexts = new Map<ScenarioModule, ScenarioContext>();
    for (const mod of modules) {
      const ctx: ScenarioContext = { temporal, admin, pool, llm, taskQueue: uniqueTaskQueue('replay-record') };
      contexts.set(mod, ctx);
      for (const worker of (await mod.startWorkers?.(ctx)) ?? []) {
        workers.push(worker);
        running.push(worker.run());
      }
    }
    let written = 0;
    for (const [mod, scenario] of modules.flatMap((m) => m.scenarios.map((s) => [m, s] as const))) {
      const ctx = contexts.get(mod)!;
      const name = `${scenario.workflowType}/${scenario.path}`;
      if (only.length > 0 && !only.some((o) => name === o || scenario.workflowType === o)) continue;
      llm.reset();
      const started = Date.now();
      const ran = await scenario.run(ctx);
      const { workflowId, runId } = typeof ran === 'string' ? { workflowId: ran, runId: undefined } : ran;
      const history = await temporal.client.workflow.getHandle(workflowId, runId).fetchHistory();
      const dir = path.join(historiesDir, scenario.workflowType);
      await mkdir(dir, { recursive: true });
      const file = path.join(dir, `${scenario.path}.json`);
      await rm(file, { force: true });
      await writeFile(file, JSON.stringify(historyToFixture(history), null, 2) + '\n');
      written++;
      console.log(`[record] ${name}: ${history.events?.length ?? 0} events in ${((Date.now() - started) / 1000).toFixed(1)} s — ${scenario.description}`);
    }
    console.log(`[record] wrote ${written} histories under ${path.relative(root, historiesDir)}/`);
  } finally {
    for (const worker of workers) worker.shutdown();
    await Promise.allSettled(running);
    for (const mod of modules) await mod.close?.();
    await llm.close();
    await temporal.close();
    await admin.end();
    await pool.end();
    await teardown();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
