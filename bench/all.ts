/**
 * `npm run bench`: every benchmark, one after the other (each starts and stops its own stack),
 * BENCH_ROUNDS rounds each (default 5), then one table of every figure with min, median and max
 * over the rounds and the baseline each ratio divides by, written to
 * bench/results/<date>-<commit>.json together with the machine and its load average.
 * Prints, never asserts. BENCH_ONLY=rls,api runs a subset; each benchmark also runs alone
 * (`npm run bench:agent-runs`, `bench:rls`, `bench:crm`, `bench:api`, `bench:knowledge`,
 * `bench:conversations`, `bench:console`).
 *
 * The machine may be shared: the load average is sampled every 5 s while each benchmark runs
 * and reported beside the table, so a figure measured under load is visibly so.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROUNDS, renderTable, summarize, type Figure } from './support/figures.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const BENCHES = ['agent-runs', 'rls', 'crm-sync', 'api', 'knowledge', 'conversations', 'console'] as const;

interface LoadSeen {
  bench: string;
  seconds: number;
  exitCode: number | null;
  /** 1-minute load average: at the start, mean and max while it ran. */
  loadStart: number;
  loadMean: number;
  loadMax: number;
}

function git(...args: string[]): string {
  return spawnSync('git', args, { cwd: root, encoding: 'utf8' }).stdout.trim();
}

async function runOne(bench: string, figuresFile: string): Promise<LoadSeen> {
  const loads = [os.loadavg()[0]!];
  const sampler = setInterval(() => loads.push(os.loadavg()[0]!), 5_000);
  const began = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'bench', `${bench}.ts`)], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, BENCH_ROUNDS: String(ROUNDS), BENCH_FIGURES_FILE: figuresFile },
  });
  const exitCode = await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  clearInterval(sampler);
  return {
    bench,
    seconds: Math.round((performance.now() - began) / 1000),
    exitCode,
    loadStart: loads[0]!,
    loadMean: loads.reduce((a, b) => a + b, 0) / loads.length,
    loadMax: Math.max(...loads),
  };
}

async function main(): Promise<void> {
  const only = process.env.BENCH_ONLY?.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = only?.filter((b) => !(BENCHES as readonly string[]).includes(b)) ?? [];
  if (unknown.length > 0) throw new Error(`BENCH_ONLY names unknown benchmarks: ${unknown.join(', ')} (known: ${BENCHES.join(', ')})`);
  const selected = BENCHES.filter((b) => !only || only.includes(b));

  // The code measured is the code at the start: a commit made while the benchmarks run must not rename the result.
  const commit = git('rev-parse', '--short=12', 'HEAD') || 'unknown';
  const dirty = git('status', '--porcelain', '--untracked-files=no') !== '';
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'bench-'));
  const figuresFile = path.join(scratch, 'figures.jsonl');
  writeFileSync(figuresFile, '');
  const loads: LoadSeen[] = [];
  try {
    for (const bench of selected) {
      console.log(`\n[bench] ===== ${bench} (${ROUNDS} rounds) =====`);
      loads.push(await runOne(bench, figuresFile));
    }
    const figures = readFileSync(figuresFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Figure);

    const date = new Date().toISOString().slice(0, 10);
    const cpus = os.cpus();
    const machine = {
      cpus: cpus.length,
      cpuModel: cpus[0]?.model ?? 'unknown',
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      platform: `${os.type()} ${os.release()}`,
      node: process.version,
    };

    console.log(`\n[bench] every figure, ${ROUNDS} rounds (a ratio is the median of per-round ratios, each against a baseline measured in the same round):\n`);
    console.log(renderTable(figures));
    console.log(`\n[bench] machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, ${machine.platform}, node ${machine.node}`);
    for (const l of loads) {
      console.log(
        `[bench] ${l.bench}: ${l.seconds} s, exit ${l.exitCode}, load average (1 min) ${l.loadStart.toFixed(1)} at start, ` +
          `mean ${l.loadMean.toFixed(1)}, max ${l.loadMax.toFixed(1)} (${machine.cpus} cores)`,
      );
    }

    const resultsDir = path.join(root, 'bench', 'results');
    mkdirSync(resultsDir, { recursive: true });
    const file = path.join(resultsDir, `${date}-${commit}${dirty ? '-dirty' : ''}.json`);
    const result = {
      date: new Date().toISOString(),
      commit,
      dirty,
      rounds: ROUNDS,
      machine,
      benches: loads,
      figures: figures.map((f) => ({ ...f, ...summarize(f.samples) })),
    };
    writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
    console.log(`[bench] wrote ${path.relative(root, file)}`);
    const failed = loads.filter((l) => l.exitCode !== 0);
    if (failed.length > 0) {
      console.error(`[bench] failed: ${failed.map((l) => l.bench).join(', ')}`);
      process.exitCode = 1;
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
