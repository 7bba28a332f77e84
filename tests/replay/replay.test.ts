/**
 * Every committed history (tests/replay/histories, written by `npm run replay:record`) must
 * replay against the workflow code in this checkout: a failure here means workflows running in
 * production would get stuck after deploying this code. Plus proof that the check has teeth,
 * and that `npm run replay` works against a live cluster.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode } from '@temporalio/worker';
import type { Worker } from '@temporalio/worker';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as workflows from '../../workflows/index.js';
import { failureConverterPath } from '../../lib/temporal-codec.js';
import { historyFromFile, replayHistories, type ReplayOutcome } from '../../workers/replay.js';
import { startFakeLlm, type FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { adminPool, appPool } from '../support/db.js';
import { connectTestTemporal, TEST_CODEC_KEYS, testDataConverter, uniqueTaskQueue, type TestTemporal } from '../support/temporal.js';
import { close as closeScenarioFakes, scenarios, startWorkers } from './scenarios/agent-run.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const historiesDir = path.join(root, 'tests', 'replay', 'histories');

const fixtures = readdirSync(historiesDir, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .flatMap((d) =>
    readdirSync(path.join(historiesDir, d.name))
      .filter((f) => f.endsWith('.json'))
      .map((f) => ({ workflowType: d.name, name: `${d.name}/${f.replace(/\.json$/, '')}`, file: path.join(historiesDir, d.name, f) })),
  );

function load(file: string) {
  const history = historyFromFile(JSON.parse(readFileSync(file, 'utf8')));
  return { workflowId: history.events![0]!.workflowExecutionStartedEventAttributes!.workflowId ?? file, history };
}

async function replayAll(items: ReturnType<typeof load>[], codePath: string): Promise<ReplayOutcome[]> {
  const outcomes: ReplayOutcome[] = [];
  for await (const outcome of replayHistories(items, { dataConverter: testDataConverter, workflowBundle: { codePath } })) outcomes.push(outcome);
  return outcomes;
}

const currentBundle = () => {
  const codePath = process.env.TEST_WORKFLOW_BUNDLE;
  if (!codePath) throw new Error('TEST_WORKFLOW_BUNDLE is not set: run through the test harness');
  return codePath;
};

describe('committed workflow histories', () => {
  it('exist for every workflow type the workers run', () => {
    const recorded = new Set(fixtures.map((f) => f.workflowType));
    const types = Object.entries(workflows).filter(([, value]) => typeof value === 'function').map(([name]) => name);
    const missing = types.filter((type) => !recorded.has(type));
    // A new workflow type needs a scenario in tests/replay/scenarios and `npm run replay:record`.
    expect(missing, `no committed history for: ${missing.join(', ')}`).toEqual([]);
  });

  it.each(fixtures)('$name replays deterministically against the current code', async ({ file }) => {
    const [outcome] = await replayAll([load(file)], currentBundle());
    expect(outcome!.failure?.message ?? '', 'replay diverged; see docs/operations.md "Changing workflow code safely"').toBe('');
    expect(outcome!.deterministic).toBe(true);
  });
});

describe('a non-deterministic change', () => {
  const bundleMutant = async (name: string) => {
    const { code } = await bundleWorkflowCode({
      workflowsPath: path.join(root, 'tests', 'replay', 'mutants', `${name}.ts`),
      failureConverterPath,
      logger: { log: () => {}, trace: () => {}, debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
    });
    const file = path.join(root, 'tests', '.artifacts', `replay-mutant-${name}-${process.pid}.js`);
    (await import('node:fs')).writeFileSync(file, code);
    return file;
  };
  // A history without patch markers: Core's report of a divergence at a patch marker names no event id.
  const completed = () => load(fixtures.find((f) => f.name === 'agentRun/legacy-remote-start-finish-completed')!.file);

  it('is caught, and the report names the event where the code diverged', async () => {
    const [outcome] = await replayAll([completed()], await bundleMutant('unpatched-delay'));
    expect(outcome!.deterministic).toBe(false);
    expect(outcome!.failure!.kind).toBe('DeterminismViolationError');
    expect(outcome!.failure!.message).toMatch(/nondetermin/i);
    expect(outcome!.failure!.eventId).toBeGreaterThan(0);
  });

  it('replays cleanly once guarded with patched()', async () => {
    const [outcome] = await replayAll([completed()], await bundleMutant('patched-delay'));
    expect(outcome!.failure?.message ?? '').toBe('');
    expect(outcome!.deterministic).toBe(true);
  });
});

describe('npm run replay', () => {
  let temporal: TestTemporal;
  let llm: FakeLlmServer;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let workers: Worker[];
  let running: Promise<void>[];
  const taskQueue = uniqueTaskQueue('replay-cli');

  beforeAll(async () => {
    temporal = await connectTestTemporal();
    llm = await startFakeLlm();
    pool = appPool();
    admin = adminPool();
    workers = await startWorkers({ temporal, admin, pool, llm, taskQueue });
    running = workers.map((w) => w.run());
  });

  afterAll(async () => {
    workers?.forEach((w) => w.shutdown());
    await Promise.allSettled(running ?? []);
    await closeScenarioFakes();
    await llm?.close();
    await temporal?.close();
    await pool?.end();
    await admin?.end();
  });

  it('fetches live histories by workflow id and by visibility query and replays them against this checkout', async () => {
    const ctx = { temporal, admin, pool, llm, taskQueue };
    const completed = (await scenarios.find((s) => s.path === 'completed')!.run(ctx)) as string;
    const rejected = (await scenarios.find((s) => s.path === 'llm-rejected')!.run(ctx)) as string;

    const cli = (args: string[]) =>
      spawnSync(path.join(root, 'node_modules', '.bin', 'tsx'), [path.join(root, 'scripts', 'replay.ts'), ...args], {
        cwd: root,
        encoding: 'utf8',
        timeout: 120_000,
        env: {
          ...process.env,
          TEMPORAL_ADDRESS: process.env.TEST_TEMPORAL_ADDRESS,
          TEMPORAL_NAMESPACE: process.env.TEST_TEMPORAL_NAMESPACE,
          TEMPORAL_CODEC_KEYS: TEST_CODEC_KEYS,
        },
      });

    // One invocation (each bundles the workflow code once): an id and a visibility query.
    const replayed = cli([completed, '--query', `WorkflowId = "${rejected}"`]);
    expect(replayed.status, replayed.stderr).toBe(0);
    expect(replayed.stdout).toContain(`✔ deterministic   agentRun ${completed}`);
    expect(replayed.stdout).toContain(`✔ deterministic   agentRun ${rejected}`);
    expect(replayed.stdout).toContain('all 2 replayed deterministically');

    const noArgs = cli([]);
    expect(noArgs.status).toBe(2);
    expect(noArgs.stderr).toContain('usage');
  }, 240_000);
});
