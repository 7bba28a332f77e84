/**
 * `npm test`: lint, typecheck, then every Vitest suite against real Temporal and Postgres
 * (the suite's globalSetup starts them and builds the console, web/, when its build is stale). Extra arguments go to Vitest and skip lint and
 * typecheck: `npm test -- tests/api`.
 */
import { spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = (name: string) => path.join(root, 'node_modules', '.bin', name);

function run(label: string, command: string, args: string[]): Promise<number> {
  const started = Date.now();
  console.log(`\n▶ ${label}`);
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: root, stdio: 'inherit' });
    child.on('exit', (code) => {
      console.log(`◀ ${label}: ${code === 0 ? 'ok' : `failed (exit ${code})`} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      resolve(code ?? 1);
    });
  });
}

async function main(): Promise<number> {
  const vitestArgs = process.argv.slice(2);
  const failures: string[] = [];
  if (vitestArgs.length === 0) {
    if ((await run('lint', bin('eslint'), ['.'])) !== 0) failures.push('lint');
    if ((await run('typecheck', bin('tsc'), ['--noEmit'])) !== 0) failures.push('typecheck');
    if ((await run('typecheck console', bin('tsc'), ['--noEmit', '-p', 'web'])) !== 0) failures.push('typecheck console');
  }

  const report = path.join(root, 'tests', '.artifacts', 'vitest-report.json');
  await rm(report, { force: true });
  // The full run measures V8 coverage of the production code (vitest.config.ts `coverage`).
  const coverage = vitestArgs.length === 0 ? ['--coverage.enabled'] : [];
  const coverageSummary = path.join(root, 'tests', '.artifacts', 'coverage', 'coverage-summary.json');
  await rm(coverageSummary, { force: true });
  const code = await run('tests', bin('vitest'), ['run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...coverage, ...vitestArgs]);
  if (code !== 0) failures.push('tests');

  // lib/db.ts' pipeline mode and named prepared statements are settings (DATABASE_PIPELINE,
  // DATABASE_PREPARED_STATEMENTS); the suites above ran with both on, the focused suite runs
  // again on plain node-postgres.
  if (vitestArgs.length === 0) {
    const label = 'database and agent-run suites on plain node-postgres (no pipeline, no prepared statements)';
    if ((await run(label, 'npm', ['run', 'test:plain-pg'])) !== 0) failures.push(label);
  }

  // Migrations and RLS must hold on every Postgres we support, not only the embedded one:
  // with TEST_DB_ALSO_ON (a superuser URL, e.g. the machine's PostgreSQL 15) the database
  // suites run a second time against that server.
  const alsoOn = process.env.TEST_DB_ALSO_ON;
  if (alsoOn && vitestArgs.length === 0) {
    process.env.DATABASE_URL = alsoOn;
    const label = `database tests again on ${new URL(alsoOn).host}`;
    if ((await run(label, bin('vitest'), ['run', 'tests/db'])) !== 0) failures.push(label);
    delete process.env.DATABASE_URL;
  }

  try {
    const summary = JSON.parse(await readFile(report, 'utf8')) as { numPassedTests: number; numFailedTests: number; numPendingTests: number; numTodoTests: number };
    // The plain closing line CI reads.
    console.log(`\nvitest: ${summary.numPassedTests} passed, ${summary.numFailedTests} failed, ${summary.numPendingTests + summary.numTodoTests} skipped`);
    if (summary.numPassedTests === 0) failures.push('no test ran');
  } catch {
    console.log('\nvitest: no report written');
    failures.push('no report');
  }
  if (coverage.length > 0) {
    try {
      const { total } = JSON.parse(await readFile(coverageSummary, 'utf8')) as { total: Record<'lines' | 'statements' | 'functions' | 'branches', { pct: number }> };
      console.log(`coverage (v8, production code in test processes): lines ${total.lines.pct}%, statements ${total.statements.pct}%, functions ${total.functions.pct}%, branches ${total.branches.pct}%`);
    } catch {
      console.log('coverage: no summary written');
    }
  }
  if (failures.length > 0) console.log(`npm test failed: ${failures.join(', ')}`);
  return failures.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
