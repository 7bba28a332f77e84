import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode } from '@temporalio/worker';
import { startSuiteStack } from '../../scripts/stack/suite-stack.js';
import { createTestCertificates, startTlsTerminator, type TlsTerminator } from '../../scripts/stack/tls-terminator.js';
import { workflowsPath } from '../../workers/agent-runs-worker.js';
import { failureConverterPath } from '../../lib/temporal-codec.js';
import { workflowInterceptorModules } from '../../workers/observability.js';

/**
 * Starts the real services the suite needs, once: a Temporal dev server (in memory, headless),
 * Postgres (DATABASE_URL or an embedded server) with a fresh migrated database, and the
 * workflow bundle. Test files find them through TEST_* environment variables.
 */
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const log = (msg: string) => console.log(`[test-stack] ${msg}`);

export default async function setup(): Promise<() => Promise<void>> {
  const started = Date.now();
  // A cluster of its own per run (initdb takes ~2 s): concurrent runs on one machine must not
  // share a postmaster that the first one to finish would stop under the other.
  const runDir = path.join(repoRoot, '.data', 'test-runs', String(process.pid));
  const [stackResult, bundleResult] = await Promise.allSettled([
    startSuiteStack({ name: `test_${Date.now()}`, postgresDataDir: path.join(runDir, 'postgres'), removeOnStop: runDir, log }),
    // The failure converter runs inside the sandbox too, so it is part of the bundle.
    bundleWorkflowCode({ workflowsPath, failureConverterPath, workflowInterceptorModules, logger: quietBundlerLogger }),
  ]);
  if (stackResult.status === 'rejected') throw stackResult.reason;
  const stack = stackResult.value;
  if (bundleResult.status === 'rejected') {
    await stack.stop();
    throw bundleResult.reason;
  }

  const artifacts = path.join(repoRoot, 'tests', '.artifacts');
  await mkdir(artifacts, { recursive: true });
  const bundlePath = path.join(artifacts, `workflow-bundle-${process.pid}.js`);
  await writeFile(bundlePath, bundleResult.value.code);

  // Mutual TLS in front of the same dev server, for the suites that prove secured connections.
  // openssl makes the certificates; a machine without it fails here, loudly, instead of skipping.
  let terminator: TlsTerminator;
  try {
    const certificates = await createTestCertificates(path.join(runDir, 'tls'));
    terminator = await startTlsTerminator({ certificates, upstreamPort: Number(stack.temporal.address.split(':').pop()) });
    process.env.TEST_TEMPORAL_TLS_DIR = certificates.dir;
  } catch (err) {
    await stack.stop();
    throw err;
  }
  process.env.TEST_TEMPORAL_TLS_ADDRESS = terminator.address;

  process.env.TEST_TEMPORAL_ADDRESS = stack.temporal.address;
  process.env.TEST_TEMPORAL_NAMESPACE = stack.temporal.namespace;
  process.env.TEST_DATABASE_ADMIN_URL = stack.adminUrl;
  process.env.TEST_DATABASE_URL = stack.appUrl;
  process.env.TEST_WORKFLOW_BUNDLE = bundlePath;
  log(`ready in ${((Date.now() - started) / 1000).toFixed(1)} s (temporal ${stack.temporal.address}, postgres ${stack.postgres.embedded ? 'embedded' : 'DATABASE_URL'})`);
  return async () => {
    await terminator.stop();
    await stack.stop();
  };
}

// The bundler logs every module at info; only problems matter in test output.
const quietBundlerLogger = {
  log: () => {},
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: (message: string) => log(`bundler: ${message}`),
  error: (message: string) => log(`bundler: ${message}`),
};
