/**
 * Worker Deployment control for `npm run deploy:promote` (and its test): make a build the
 * deployment's current version once its workers poll, and wait until routing has switched.
 * The SDK 1.24 client has no high-level API for this; the workflow service calls are the API.
 */
import type { Client } from '@temporalio/client';
import type { WorkerDeploymentVersion } from '@temporalio/common';
// Default import: @temporalio/proto is CommonJS whose named exports Node's ESM loader cannot
// see, so `import { temporal }` works under Vitest but fails under `node --import tsx`.
import protos from '@temporalio/proto';

const { temporal } = protos;

const IN_PROGRESS = temporal.api.enums.v1.RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_IN_PROGRESS;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface DeploymentRouting {
  current?: string | undefined;
  ramping?: string | undefined;
  versions: string[];
}

export async function describeDeployment(client: Client, deploymentName: string): Promise<DeploymentRouting & { conflictToken?: Uint8Array | null }> {
  const { workerDeploymentInfo, conflictToken } = await client.workflowService.describeWorkerDeployment({ namespace: client.options.namespace, deploymentName });
  const routing = workerDeploymentInfo?.routingConfig;
  return {
    current: routing?.currentDeploymentVersion?.buildId ?? undefined,
    ramping: routing?.rampingDeploymentVersion?.buildId ?? undefined,
    versions: (workerDeploymentInfo?.versionSummaries ?? []).map((v) => v.deploymentVersion?.buildId ?? '').filter(Boolean),
    conflictToken,
  };
}

/**
 * Makes `version` current. The server refuses while the version has no pollers (its workers
 * are still starting), so this retries until `timeoutMs`; then waits for routing to settle.
 */
export async function setCurrentVersion(client: Client, version: WorkerDeploymentVersion, opts: { timeoutMs?: number; identity?: string } = {}): Promise<void> {
  const namespace = client.options.namespace;
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  for (;;) {
    try {
      const { conflictToken } = await describeDeployment(client, version.deploymentName);
      await client.workflowService.setWorkerDeploymentCurrentVersion({
        namespace,
        deploymentName: version.deploymentName,
        buildId: version.buildId,
        ...(conflictToken ? { conflictToken } : {}),
        identity: opts.identity ?? 'deploy:promote',
      });
      break;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`could not make ${version.deploymentName}/${version.buildId} current: ${(err as Error).message}`, { cause: err });
      await sleep(1_000);
    }
  }
  for (;;) {
    const { workerDeploymentInfo } = await client.workflowService.describeWorkerDeployment({ namespace, deploymentName: version.deploymentName });
    const routing = workerDeploymentInfo?.routingConfig;
    if (routing?.currentDeploymentVersion?.buildId === version.buildId && workerDeploymentInfo?.routingConfigUpdateState !== IN_PROGRESS) return;
    if (Date.now() > deadline) throw new Error(`routing to ${version.buildId} did not settle in time`);
    await sleep(500);
  }
}
