/**
 * `npm run deploy:promote`: the release step after the new worker build is running next to the
 * old one (docs/operations.md "Deploy workflow changes"). Uses the same variables as the worker
 * it promotes (TEMPORAL_WORKER_DEPLOYMENT_NAME, TEMPORAL_WORKER_BUILD_ID) and the same Temporal
 * connection settings as every process.
 *
 * 1. Replay gate: every open workflow that will move to the new build (AUTO_UPGRADE or
 *    unversioned; pinned ones never do) is replayed against the workflow code of this image.
 *    Any failure stops here, before routing changes, with exit code 1.
 * 2. Makes the build the deployment's current version once its workers poll, and waits for
 *    routing to switch. New agent runs start on it; pinned runs finish where they began.
 *
 * Rollback is the same command run from the previous image (its build id), while its workers
 * are still up.
 */
import type { HistoryAndWorkflowId } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
// Default import: @temporalio/proto is CommonJS whose named exports Node's ESM loader cannot
// see, so `import { temporal }` works under Vitest but fails under `node --import tsx`.
import protos from '@temporalio/proto';
import { ConfigError, loadTemporalToolConfig } from '../lib/config.js';
import { codecKeyringFrom, createDataConverter } from '../lib/temporal-codec.js';
import { createTemporalClient, describeTemporalConnection } from '../lib/temporal.js';
import { describeOutcome, replayHistories } from '../workers/replay.js';
import { describeDeployment, setCurrentVersion } from '../workers/deployments.js';
import { deploymentVersionFromConfig } from '../workers/versioning.js';

const { temporal } = protos;

const PINNED = temporal.api.enums.v1.VersioningBehavior.VERSIONING_BEHAVIOR_PINNED;
const REPLAY_LIMIT = Number(process.env.PROMOTE_REPLAY_LIMIT ?? 500);

async function main(): Promise<number> {
  const config = loadTemporalToolConfig();
  const version = deploymentVersionFromConfig({
    TEMPORAL_WORKER_DEPLOYMENT_NAME: process.env.TEMPORAL_WORKER_DEPLOYMENT_NAME,
    TEMPORAL_WORKER_BUILD_ID: process.env.TEMPORAL_WORKER_BUILD_ID,
  });
  if (!version) throw new ConfigError(['TEMPORAL_WORKER_DEPLOYMENT_NAME and TEMPORAL_WORKER_BUILD_ID: required (the build to promote)']);
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const dataConverter = createDataConverter(codecKeyringFrom(config));
  const client = await createTemporalClient(config, { dataConverter });
  try {
    console.log(`[promote] ${version.deploymentName}/${version.buildId} on ${describeTemporalConnection(config)}`);
    const before = await describeDeployment(client, version.deploymentName).catch(() => undefined);
    console.log(`[promote] current: ${before?.current ?? 'none'}; versions: ${before?.versions.join(', ') || 'none'}`);

    // Histories of open runs that the new build will execute from their next task on.
    let skippedPinned = 0;
    const movers = (async function* (): AsyncGenerator<HistoryAndWorkflowId> {
      let count = 0;
      for await (const execution of client.workflow.list({ query: 'ExecutionStatus = "Running"' })) {
        if (execution.raw.versioningInfo?.behavior === PINNED) {
          skippedPinned++;
          continue;
        }
        yield { workflowId: execution.workflowId, history: await client.workflow.getHandle(execution.workflowId, execution.runId).fetchHistory() };
        if (++count >= REPLAY_LIMIT) break;
      }
    })();
    let total = 0;
    let diverged = 0;
    let unverified = 0;
    for await (const outcome of replayHistories(movers, { dataConverter, replayName: 'deploy-promote', payloadKeys: { keyring: codecKeyringFrom(config) } })) {
      total++;
      if (outcome.status === 'nondeterministic') diverged++;
      else if (!outcome.deterministic) unverified++;
      if (!outcome.deterministic) console.log(describeOutcome(outcome));
    }
    console.log(`[promote] replay gate: ${total - diverged - unverified} of ${total} open runs replay on this build (${skippedPinned} pinned runs stay on their build)`);
    if (diverged > 0) {
      console.error(`[promote] NOT promoted: ${diverged} open runs would fail on ${version.buildId}; guard the change with patched() (docs/operations.md)`);
      return 1;
    }
    if (unverified > 0) {
      // Not a verdict on the code: the gate could not check these runs (payload keys, replay errors).
      console.error(`[promote] NOT promoted: ${unverified} open runs could not be replayed (see above; TEMPORAL_CODEC_KEYS?), so the build is unverified`);
      return 1;
    }
    await setCurrentVersion(client, version, { timeoutMs: Number(process.env.PROMOTE_TIMEOUT_MS ?? 300_000) });
    console.log(`[promote] ${version.buildId} is current`);
    return 0;
  } finally {
    await client.connection.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof ConfigError ? err.message : `[promote] ${(err as Error).message}`);
    process.exit(2);
  },
);
