/**
 * Worker Deployment Versioning: every worker of one image declares the same deployment version
 * (TEMPORAL_WORKER_DEPLOYMENT_NAME + TEMPORAL_WORKER_BUILD_ID), so Temporal routes each workflow
 * to the build it belongs on. Which build that is depends on the workflow's behaviour, declared
 * in workflows/index.ts: agent runs stay PINNED to the build that started them; conversations
 * (marked by the API with a memo) and CRM syncs move to the current build.
 * See docs/operations.md "Deploy workflow changes (Worker Versioning)".
 */
import type { WorkerDeploymentVersion } from '@temporalio/common';
import type { WorkerOptions } from '@temporalio/worker';

export function workerDeploymentOptions(version: WorkerDeploymentVersion | undefined): Pick<WorkerOptions, 'workerDeploymentOptions'> {
  if (!version) return {};
  // Only a workflow type without a declared behaviour falls back to this; each of ours declares one.
  return { workerDeploymentOptions: { version, useWorkerVersioning: true, defaultVersioningBehavior: 'PINNED' } };
}

export function deploymentVersionFromConfig(config: { TEMPORAL_WORKER_DEPLOYMENT_NAME?: string | undefined; TEMPORAL_WORKER_BUILD_ID?: string | undefined }): WorkerDeploymentVersion | undefined {
  if (!config.TEMPORAL_WORKER_DEPLOYMENT_NAME || !config.TEMPORAL_WORKER_BUILD_ID) return undefined;
  return { deploymentName: config.TEMPORAL_WORKER_DEPLOYMENT_NAME, buildId: config.TEMPORAL_WORKER_BUILD_ID };
}
