/**
 * Deploys one image (by digest) to one environment, in the order a release needs, and undoes
 * the API switch in one command. Each step is its own command so the release workflow shows
 * and gates them separately:
 *
 *   migrate  --overlay DIR --image REF   config, then the setup Job (migrations) for this image, waited for
 *   workers  --overlay DIR --image REF   a worker Deployment per build (Worker Deployment Versioning),
 *                                        rolled out, then made the current version
 *   api      --overlay DIR --image REF [--smoke-url URL]
 *                                        the idle colour on the new image, ready, smoke-checked through
 *                                        gap-api-preview, then gap-api's selector flipped to it
 *   rollback --overlay DIR               gap-api back to the previous colour (scaled up again if retired)
 *   retire   --overlay DIR               the colour not serving scaled to zero (after the watch passed)
 *   status   --overlay DIR               which colour serves which image
 *
 * --dry-run [--state FILE] prints the kubectl commands as JSON lines instead of running them,
 * reading live objects from FILE ({"Service/gap-api": {...}, ...}).
 */
import { parseArgs } from 'node:util';
import { DryRunCluster, KubectlCluster, render, type Cluster, type K8sObject } from './kube.js';
import { smoke, smokeFromEnv } from './smoke.js';

export const COLOR_LABEL = 'app.kubernetes.io/color';
export const PREVIOUS_COLOR = 'gpt-agent-platform/previous-color';
export const BUILD_ID_LABEL = 'gpt-agent-platform/build-id';
const COLORS = ['blue', 'green'] as const;
type Color = (typeof COLORS)[number];
const other = (c: Color): Color => (c === 'blue' ? 'green' : 'blue');
const ROLLOUT_TIMEOUT = '--timeout=10m';

class DeployError extends Error {}

/** `ghcr.io/o/r@sha256:abcd…` → `abcd…` (12 hex): a build id and name suffix for this image. */
export function buildIdOf(image: string): string {
  const digest = /@sha256:([0-9a-f]{64})$/.exec(image)?.[1];
  if (!digest) throw new DeployError(`--image must be pinned by digest (…@sha256:<64 hex>), got ${image}`);
  return digest.slice(0, 12);
}

function find(objects: K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && o.metadata?.name === name);
  if (!found) throw new DeployError(`the overlay renders no ${kind} ${name}`);
  return structuredClone(found);
}

function setImage(object: K8sObject, image: string): K8sObject {
  for (const container of object.spec.template.spec.containers) container.image = image;
  return object;
}

function liveColor(cluster: Cluster): { active: Color | undefined; previous: Color | undefined } {
  const service = cluster.get('service', 'gap-api');
  const active = service?.spec?.selector?.[COLOR_LABEL] as Color | undefined;
  const previous = service?.metadata?.annotations?.[PREVIOUS_COLOR] as Color | undefined;
  return { active, previous };
}

/** What every release applies as rendered, before any process: config, policies, scaling, monitoring, alert routing. */
const PLATFORM_KINDS = ['ConfigMap', 'NetworkPolicy', 'PodDisruptionBudget', 'HorizontalPodAutoscaler', 'PodMonitor'];
const platform = (o: K8sObject) => PLATFORM_KINDS.includes(o.kind) || (['Deployment', 'Service'].includes(o.kind) && o.metadata?.name === 'gap-alertmanager');

function migrate(cluster: Cluster, objects: K8sObject[], image: string): void {
  // Config and policies first: the setup Job reads the ConfigMap.
  cluster.apply(objects.filter(platform));
  const job = setImage(find(objects, 'Job', 'gap-setup'), image);
  // One Job per image: a Job's pod template is immutable, and its name records what ran.
  job.metadata.name = `gap-setup-${buildIdOf(image)}`;
  cluster.apply([job]);
  cluster.kubectl(['wait', '--for=condition=complete', `job/${job.metadata.name}`, '--timeout=15m']);
}

function workers(cluster: Cluster, objects: K8sObject[], image: string): void {
  const buildId = buildIdOf(image);
  // Each build is its own Deployment: Temporal keeps routing runs pinned to the old version to
  // the old pods, which stay until that version has drained (docs/operations.md).
  const worker = setImage(find(objects, 'Deployment', 'gap-worker'), image);
  worker.metadata.name = `gap-worker-${buildId}`;
  worker.metadata.labels = { ...worker.metadata.labels, [BUILD_ID_LABEL]: buildId };
  worker.spec.selector.matchLabels = { ...worker.spec.selector.matchLabels, [BUILD_ID_LABEL]: buildId };
  worker.spec.template.metadata.labels = { ...worker.spec.template.metadata.labels, [BUILD_ID_LABEL]: buildId };
  // The worker and the promotion read the same pair (lib/config.ts, workers/versioning.ts).
  const versionEnv = (container: K8sObject) => {
    container.env = [
      ...(container.env ?? []).filter((e: K8sObject) => !['TEMPORAL_WORKER_DEPLOYMENT_NAME', 'TEMPORAL_WORKER_BUILD_ID'].includes(e.name)),
      { name: 'TEMPORAL_WORKER_DEPLOYMENT_NAME', value: 'gap-worker' },
      { name: 'TEMPORAL_WORKER_BUILD_ID', value: buildId },
    ];
  };
  versionEnv(worker.spec.template.spec.containers[0]);
  const codec = setImage(find(objects, 'Deployment', 'gap-codec-server'), image);
  cluster.apply([worker, codec, ...objects.filter((o) => o.kind === 'Service' && o.metadata.name === 'gap-codec-server')]);
  cluster.kubectl(['rollout', 'status', `deployment/${worker.metadata.name}`, ROLLOUT_TIMEOUT]);
  // New runs go to the new build only once its pollers are up; the promotion replays live
  // histories against it first (scripts/deploy-promote.ts, `npm run deploy:promote`, issue 13) and refuses on divergence.
  const promote = setImage(find(objects, 'Job', 'gap-setup'), image);
  promote.metadata.name = `gap-promote-${buildId}`;
  // deploy:promote takes no arguments: the build to promote comes from the environment.
  promote.spec.template.spec.containers[0].command = ['node', '--import', 'tsx', 'scripts/deploy-promote.ts'];
  // Its own Secret (codec keys to replay histories), never setup's migration superuser.
  for (const from of promote.spec.template.spec.containers[0].envFrom ?? []) {
    if (from.secretRef) from.secretRef.name = String(from.secretRef.name).replace(/\.setup$/, '.promote');
  }
  versionEnv(promote.spec.template.spec.containers[0]);
  cluster.apply([promote]);
  cluster.kubectl(['wait', '--for=condition=complete', `job/${promote.metadata.name}`, '--timeout=15m']);
}

async function api(cluster: Cluster, objects: K8sObject[], image: string, smokeUrl: string | undefined, dryRun: boolean): Promise<void> {
  const { active } = liveColor(cluster);
  const target: Color = active ? other(active) : 'blue';
  // The overlay's size for the API is the blue Deployment's (green renders with none).
  const replicas = find(objects, 'Deployment', 'gap-api-blue').spec.replicas as number;
  const deployment = setImage(find(objects, 'Deployment', `gap-api-${target}`), image);
  deployment.spec.replicas = replicas;
  const preview = find(objects, 'Service', 'gap-api-preview');
  preview.spec.selector = { ...preview.spec.selector, [COLOR_LABEL]: target };
  // The serving colour is not touched: it keeps its image and keeps answering until the flip.
  cluster.apply([deployment, preview]);
  cluster.kubectl(['rollout', 'status', `deployment/gap-api-${target}`, ROLLOUT_TIMEOUT]);
  if (smokeUrl) {
    if (dryRun) console.log(JSON.stringify({ smoke: smokeUrl }));
    else await smoke(smokeFromEnv(smokeUrl));
  }
  const service = find(objects, 'Service', 'gap-api');
  service.spec.selector = { ...service.spec.selector, [COLOR_LABEL]: target };
  if (active) service.metadata.annotations = { ...service.metadata.annotations, [PREVIOUS_COLOR]: active };
  cluster.apply([service, ...objects.filter((o) => o.kind === 'Ingress')]);
  console.error(`[bluegreen] gap-api now serves ${target} (${image})${active ? `; ${active} stays up for rollback until retire` : ''}`);
}

function rollback(cluster: Cluster): void {
  const { active, previous } = liveColor(cluster);
  if (!active || !previous) throw new DeployError('nothing to roll back to: gap-api has no previous colour (no switch has happened yet)');
  const standby = cluster.get('deployment', `gap-api-${previous}`);
  if (!standby) throw new DeployError(`deployment gap-api-${previous} does not exist`);
  if (!standby.spec?.replicas) {
    // Retired already: bring it back at the serving colour's size before sending traffic.
    const serving = cluster.get('deployment', `gap-api-${active}`);
    cluster.kubectl(['scale', `deployment/gap-api-${previous}`, `--replicas=${serving?.spec?.replicas ?? 1}`]);
    cluster.kubectl(['rollout', 'status', `deployment/gap-api-${previous}`, ROLLOUT_TIMEOUT]);
  }
  cluster.kubectl([
    'patch',
    'service',
    'gap-api',
    '--type=merge',
    '--patch',
    JSON.stringify({ metadata: { annotations: { [PREVIOUS_COLOR]: active } }, spec: { selector: { [COLOR_LABEL]: previous } } }),
  ]);
  console.error(`[bluegreen] gap-api rolled back to ${previous}; ${active} stays up (retire scales it down)`);
}

function retire(cluster: Cluster): void {
  const { active } = liveColor(cluster);
  if (!active) throw new DeployError('gap-api selects no colour; nothing to retire');
  cluster.kubectl(['scale', `deployment/gap-api-${other(active)}`, '--replicas=0']);
}

function status(cluster: Cluster): void {
  const { active, previous } = liveColor(cluster);
  for (const color of COLORS) {
    const d = cluster.get('deployment', `gap-api-${color}`);
    const image = d?.spec?.template?.spec?.containers?.[0]?.image ?? '-';
    console.log(`${color}${color === active ? ' (serving)' : color === previous ? ' (previous)' : ''}: ${d ? `${d.status?.readyReplicas ?? 0}/${d.spec.replicas} ready, ${image}` : 'absent'}`);
  }
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      overlay: { type: 'string' },
      image: { type: 'string' },
      'smoke-url': { type: 'string' },
      'dry-run': { type: 'boolean' },
      state: { type: 'string' },
    },
  });
  const command = positionals[0];
  if (!command || !values.overlay) throw new DeployError('usage: bluegreen.ts <migrate|workers|api|rollback|retire|status> --overlay DIR [--image REF] [--smoke-url URL] [--dry-run [--state FILE]]');
  const objects = render(values.overlay);
  const namespace = objects.find((o) => o.metadata?.namespace)?.metadata.namespace as string | undefined;
  if (!namespace) throw new DeployError(`the overlay ${values.overlay} sets no namespace`);
  const cluster: Cluster = values['dry-run'] ? new DryRunCluster(namespace, values.state) : new KubectlCluster(namespace);
  const image = () => {
    if (!values.image) throw new DeployError(`${command} needs --image <registry/name@sha256:…>`);
    buildIdOf(values.image);
    return values.image;
  };
  switch (command) {
    case 'migrate':
      return migrate(cluster, objects, image());
    case 'workers':
      return workers(cluster, objects, image());
    case 'api':
      return api(cluster, objects, image(), values['smoke-url'], Boolean(values['dry-run']));
    case 'rollback':
      return rollback(cluster);
    case 'retire':
      return retire(cluster);
    case 'status':
      return status(cluster);
    default:
      throw new DeployError(`unknown command ${command}`);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`[bluegreen] ${err instanceof DeployError ? err.message : (err as Error).stack}`);
    process.exit(1);
  },
);
