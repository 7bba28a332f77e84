/**
 * The staging and production overlays rendered by kustomize, and the blue-green deploy script in
 * dry-run mode against recorded cluster states: the overlays differ only where an environment
 * must (namespace, replicas, resources, secret name, hosts, public URL), both API colours run
 * the same pod, and each deploy command issues the kubectl calls a safe release needs, in order.
 * No cluster is available here; nothing is applied.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { kustomizeCommand, render, type K8sObject } from '../../scripts/deploy/kube.js';
import { findGo, opsToolCache, requireOrWarn } from '../support/ops-tools.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const overlay = (env: string) => path.join(root, 'docker', 'overlays', env);
const hasKustomize = kustomizeCommand() !== undefined;
const IMAGE = `ghcr.io/example/gpt-agent-platform@sha256:${'ab12'.repeat(16)}`;
const BUILD_ID = 'ab12ab12ab12';

const byId = (objects: K8sObject[]) => new Map(objects.map((o) => [`${o.kind}/${o.metadata.name}`, o]));

/** The object with every value an environment may set replaced by a marker. */
function withoutEnvironment(o: K8sObject): K8sObject {
  const c = structuredClone(o);
  delete c.metadata.namespace;
  delete c.metadata.labels?.['app.kubernetes.io/instance'];
  if (c.spec?.replicas !== undefined) c.spec.replicas = 'REPLICAS';
  for (const container of c.spec?.template?.spec?.containers ?? []) {
    container.resources = 'RESOURCES';
    for (const from of container.envFrom ?? []) if (from.secretRef) from.secretRef.name = 'SECRET';
    for (const env of container.env ?? []) if (env.valueFrom?.secretKeyRef) env.valueFrom.secretKeyRef.name = 'SECRET';
  }
  for (const volume of c.spec?.template?.spec?.volumes ?? []) if (volume.secret) volume.secret.secretName = 'SECRET';
  if (c.kind === 'Ingress') return { kind: 'Ingress', hosts: 'HOSTS', backends: c.spec.rules.map((r: K8sObject) => r.http.paths[0].backend) };
  if (c.kind === 'ConfigMap') {
    c.data.API_PUBLIC_URL = 'URL';
    c.data.SENTRY_ENVIRONMENT = 'ENV';
  }
  return c;
}

describe.runIf(hasKustomize)('docker/overlays (kustomize build)', () => {
  const staging = hasKustomize ? render(overlay('staging')) : [];
  const production = hasKustomize ? render(overlay('production')) : [];

  it('render the same objects, in their own namespaces', () => {
    expect([...byId(staging).keys()].sort()).toEqual([...byId(production).keys()].sort());
    expect(new Set(staging.map((o) => o.metadata.namespace))).toEqual(new Set(['gap-staging']));
    expect(new Set(production.map((o) => o.metadata.namespace))).toEqual(new Set(['gap-production']));
    // The build-time values object never reaches the cluster.
    expect(byId(staging).has('ConfigMap/gap-environment')).toBe(false);
  });

  it('differ only in replicas, resources, secret name, hosts and the public URL', () => {
    const prod = byId(production);
    for (const o of staging) expect(withoutEnvironment(o), `${o.kind}/${o.metadata.name}`).toEqual(withoutEnvironment(prod.get(`${o.kind}/${o.metadata.name}`)!));
    // And they do differ there.
    const s = byId(staging);
    expect(prod.get('Deployment/gap-api-blue')!.spec.replicas).toBeGreaterThan(s.get('Deployment/gap-api-blue')!.spec.replicas);
    expect(prod.get('Deployment/gap-worker')!.spec.replicas).toBeGreaterThan(s.get('Deployment/gap-worker')!.spec.replicas);
    const secretOf = (objects: K8sObject[]) =>
      new Set(objects.flatMap((o) => (o.spec?.template?.spec?.containers ?? []).flatMap((c: K8sObject) => [...(c.envFrom ?? []).map((f: K8sObject) => f.secretRef?.name), ...(c.env ?? []).map((e: K8sObject) => e.valueFrom?.secretKeyRef?.name)]).filter(Boolean)));
    const perProcess = (prefix: string) => new Set(['api', 'worker', 'setup', 'codec-server'].map((p) => `${prefix}.${p}`));
    expect(secretOf(staging)).toEqual(perProcess('gap-staging'));
    expect(secretOf(production)).toEqual(perProcess('gap-production'));
    const hosts = (objects: K8sObject[]) => byId(objects).get('Ingress/gap-api')!.spec.rules.map((r: K8sObject) => r.host);
    expect(hosts(staging)).toEqual(['api.staging.example.com', 'preview.api.staging.example.com']);
    expect(hosts(production)).toEqual(['api.example.com', 'preview.api.example.com']);
    expect(s.get('ConfigMap/gpt-agent-platform')!.data).toMatchObject({ API_PUBLIC_URL: 'https://api.staging.example.com', SENTRY_ENVIRONMENT: 'staging' });
    // Staging runs in production mode (APP_ENV accepts development, test, production only).
    expect(s.get('ConfigMap/gpt-agent-platform')!.data.APP_ENV).toBe('production');
  });

  it('give the API two colours with one pod spec, the Service on blue and the preview on green', () => {
    for (const objects of [staging, production]) {
      const o = byId(objects);
      expect(o.has('Deployment/gap-api')).toBe(false);
      const blue = o.get('Deployment/gap-api-blue')!;
      const green = o.get('Deployment/gap-api-green')!;
      expect(green.spec.template.spec).toEqual(blue.spec.template.spec);
      expect(green.spec.strategy).toEqual(blue.spec.strategy);
      expect(green.spec.replicas).toBe(0);
      expect(blue.spec.selector.matchLabels['app.kubernetes.io/color']).toBe('blue');
      expect(green.spec.selector.matchLabels['app.kubernetes.io/color']).toBe('green');
      expect(green.spec.template.metadata.labels['app.kubernetes.io/color']).toBe('green');
      expect(o.get('Service/gap-api')!.spec.selector).toEqual({ 'app.kubernetes.io/name': 'gap-api', 'app.kubernetes.io/color': 'blue' });
      expect(o.get('Service/gap-api-preview')!.spec.selector).toEqual({ 'app.kubernetes.io/name': 'gap-api', 'app.kubernetes.io/color': 'green' });
      // Both colours keep the metrics port Prometheus scrapes.
      expect(green.spec.template.metadata.annotations).toEqual(blue.spec.template.metadata.annotations);
    }
  });
});

/**
 * tools/k8s-validate: every rendered object decoded strictly into its k8s.io/api type (the
 * offline stand-in for kubeconform, whose schemas need the internet). Built here from the
 * repository's source on every run, so the check is the one committed; Go's build cache makes
 * that a link step after the first build (.ci/run warms it).
 */
const go = findGo();
describe.runIf(hasKustomize && go)('docker manifests pass the Kubernetes API schema (tools/k8s-validate)', () => {
  const validator = path.join(opsToolCache(), 'k8s-validate');
  const validate = (yaml: string) => spawnSync(validator, [], { input: yaml, encoding: 'utf8' });
  const build = (dir: string) => {
    const command = kustomizeCommand()!;
    const result = spawnSync(command[0]!, [...command.slice(1), dir], { encoding: 'utf8', maxBuffer: 32 * 1024 * 1024 });
    expect(result.status, result.stderr).toBe(0);
    return result.stdout;
  };

  beforeAll(async () => {
    mkdirSync(path.dirname(validator), { recursive: true });
    await promisify(execFile)(go!, ['build', '-o', validator, '.'], { cwd: path.join(root, 'tools', 'k8s-validate'), env: { ...process.env, CGO_ENABLED: '0' } });
  }, 900_000);

  for (const [name, dir] of [
    ['base', path.join(root, 'docker', 'k8s')],
    ['staging', overlay('staging')],
    ['production', overlay('production')],
  ] as const) {
    it(`${name}: every object is valid`, () => {
      const result = validate(build(dir));
      expect(result.stdout, result.stderr).toBe('');
      expect(result.status).toBe(0);
      expect(result.stderr).toMatch(/k8s-validate: \d+ objects, 0 invalid/);
    });
  }

  it('rejects a misspelled field, a wrong type and an unknown kind, naming each object', () => {
    const staging = build(overlay('staging'));
    const misspelled = staging.replace(/^ {2}replicas:/m, '  replicass:');
    expect(misspelled).not.toBe(staging);
    const bad = validate(misspelled);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toMatch(/^Deployment\/gap-[a-z-]+ \(document \d+\): unknown field "spec\.replicass"$/m);

    const wrongType = validate(['apiVersion: v1', 'kind: Service', 'metadata: { name: gap-x }', 'spec:', '  ports: [{ port: eighty }]'].join('\n'));
    expect(wrongType.status).toBe(1);
    expect(wrongType.stdout).toMatch(/^Service\/gap-x .*cannot unmarshal string .*spec\.ports\.port of type int32/m);

    const resources = validate(staging.replace(/cpu: [^\n]+/, 'cpu: lots'));
    expect(resources.status).toBe(1);
    expect(resources.stdout).toMatch(/quantities must match the regular expression/);

    const unknown = validate(['apiVersion: example.com/v1', 'kind: Widget', 'metadata: { name: gap-w }'].join('\n'));
    expect(unknown.status).toBe(1);
    expect(unknown.stdout).toMatch(/Widget\/gap-w .*unknown apiVersion\/kind/);

    // The valid documents around a broken one still pass: only the broken one is reported.
    expect(bad.stdout.split('\n').filter(Boolean).every((l) => l.includes('replicass'))).toBe(true);
  });
});

describe('go (builds tools/k8s-validate)', () => {
  it('is installed', () => {
    if (!go) requireOrWarn('go', 'REQUIRE_K8S_VALIDATE', 'install Go 1.26 (the schema check of docker/ manifests is built from tools/k8s-validate)');
  });
});

describe('kustomize', () => {
  it('is installed (kustomize, or kubectl with its built-in kustomize)', () => {
    if (!hasKustomize) requireOrWarn('kustomize', 'REQUIRE_KUSTOMIZE', 'go install sigs.k8s.io/kustomize/kustomize/v5@v5.7.1');
  });
});

type Line = { kubectl?: string[]; objects?: K8sObject[]; smoke?: string };

function bluegreen(args: string[], state?: Record<string, K8sObject>): { code: number | null; lines: Line[]; stderr: string } {
  const extra: string[] = [];
  if (state) {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'bluegreen-')), 'state.json');
    writeFileSync(file, JSON.stringify(state));
    extra.push('--state', file);
  }
  const result = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'scripts/deploy/bluegreen.ts'), ...args, '--dry-run', ...extra], { cwd: root, encoding: 'utf8' });
  const lines = result.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);
  return { code: result.status, lines, stderr: result.stderr };
}

const service = (color: string, previous?: string) => ({
  kind: 'Service',
  metadata: { name: 'gap-api', annotations: previous ? { 'gpt-agent-platform/previous-color': previous } : {} },
  spec: { selector: { 'app.kubernetes.io/name': 'gap-api', 'app.kubernetes.io/color': color } },
});
const deployment = (name: string, replicas: number) => ({ kind: 'Deployment', metadata: { name }, spec: { replicas, template: { spec: { containers: [{ image: 'old@sha256:0' }] } } } });
const verb = (l: Line) => l.kubectl!.slice(2, 4).join(' ');

describe.runIf(hasKustomize)('scripts/deploy/bluegreen.ts --dry-run', () => {
  const staging = ['--overlay', overlay('staging')];

  it('migrate: config first, then a setup Job named for the image, waited for', () => {
    const { code, lines, stderr } = bluegreen(['migrate', ...staging, '--image', IMAGE]);
    expect(code, stderr).toBe(0);
    expect(lines.map((l) => l.kubectl!.slice(0, 2))).toEqual([['--namespace', 'gap-staging'], ['--namespace', 'gap-staging'], ['--namespace', 'gap-staging']]);
    expect(new Set(lines[0]!.objects!.map((o) => o.kind))).toEqual(new Set(['ConfigMap', 'NetworkPolicy', 'PodDisruptionBudget', 'HorizontalPodAutoscaler', 'PodMonitor', 'Deployment', 'Service']));
    // The only workload applied with the config is Alertmanager; the processes come in their own steps.
    expect(lines[0]!.objects!.filter((o) => ['Deployment', 'Service'].includes(o.kind)).map((o) => o.name)).toEqual(['gap-alertmanager', 'gap-alertmanager']);
    expect(lines[1]!.objects).toEqual([expect.objectContaining({ kind: 'Job', name: `gap-setup-${BUILD_ID}`, images: [IMAGE], command: ['node', '--import', 'tsx', 'scripts/deploy-setup.ts'] })]);
    expect(lines[2]!.kubectl).toEqual(['--namespace', 'gap-staging', 'wait', '--for=condition=complete', `job/gap-setup-${BUILD_ID}`, '--timeout=15m']);
  });

  it('workers: a Deployment for this build next to the old ones, rolled out, then promoted', () => {
    const { code, lines, stderr } = bluegreen(['workers', ...staging, '--image', IMAGE]);
    expect(code, stderr).toBe(0);
    const worker = lines[0]!.objects!.find((o) => o.kind === 'Deployment' && o.name.startsWith('gap-worker'))!;
    expect(worker).toMatchObject({ name: `gap-worker-${BUILD_ID}`, images: [IMAGE], replicas: 1 });
    expect(worker.matchLabels).toEqual({ 'app.kubernetes.io/name': 'gap-worker', 'gpt-agent-platform/build-id': BUILD_ID });
    expect(worker.env).toMatchObject({ TEMPORAL_WORKER_DEPLOYMENT_NAME: 'gap-worker', TEMPORAL_WORKER_BUILD_ID: BUILD_ID });
    expect(lines.map((l) => l.kubectl!.slice(2).join(' '))).toEqual([
      'apply --server-side -f -',
      `rollout status deployment/gap-worker-${BUILD_ID} --timeout=10m`,
      'apply --server-side -f -',
      `wait --for=condition=complete job/gap-promote-${BUILD_ID} --timeout=15m`,
    ]);
    // The promotion reads the build from the same variables the worker does, and takes no arguments.
    expect(lines[2]!.objects![0]).toMatchObject({
      kind: 'Job',
      name: `gap-promote-${BUILD_ID}`,
      images: [IMAGE],
      command: ['node', '--import', 'tsx', 'scripts/deploy-promote.ts'],
      env: { TEMPORAL_WORKER_DEPLOYMENT_NAME: 'gap-worker', TEMPORAL_WORKER_BUILD_ID: BUILD_ID },
      secrets: ['gap-staging.promote'],
    });
  });

  it('api, first release: blue comes up, is smoke-checked, and the Service selects it', () => {
    const { code, lines, stderr } = bluegreen(['api', ...staging, '--image', IMAGE, '--smoke-url', 'https://preview.api.staging.example.com']);
    expect(code, stderr).toBe(0);
    expect(lines[0]!.objects).toEqual([
      expect.objectContaining({ kind: 'Deployment', name: 'gap-api-blue', images: [IMAGE], replicas: 1 }),
      expect.objectContaining({ kind: 'Service', name: 'gap-api-preview', selector: { 'app.kubernetes.io/name': 'gap-api', 'app.kubernetes.io/color': 'blue' } }),
    ]);
    expect(lines[1]!.kubectl!.slice(2)).toEqual(['rollout', 'status', 'deployment/gap-api-blue', '--timeout=10m']);
    expect(lines[2]).toEqual({ smoke: 'https://preview.api.staging.example.com' });
    expect(lines[3]!.objects![0]).toMatchObject({ kind: 'Service', name: 'gap-api', selector: { 'app.kubernetes.io/color': 'blue' }, annotations: {} });
  });

  it('api, blue serving: green gets the image and the overlay size, blue is untouched until the flip records it as previous', () => {
    const production = ['--overlay', overlay('production')];
    const { code, lines, stderr } = bluegreen(['api', ...production, '--image', IMAGE, '--smoke-url', 'https://preview.api.example.com'], {
      'service/gap-api': service('blue'),
      'deployment/gap-api-blue': deployment('gap-api-blue', 3),
    });
    expect(code, stderr).toBe(0);
    const applied = lines.flatMap((l) => l.objects ?? []);
    expect(applied.filter((o) => o.kind === 'Deployment')).toEqual([expect.objectContaining({ name: 'gap-api-green', images: [IMAGE], replicas: 3 })]);
    expect(lines.map((l) => (l.smoke ? 'smoke' : verb(l)))).toEqual(['apply --server-side', 'rollout status', 'smoke', 'apply --server-side']);
    // The flip comes last, after readiness and the smoke check.
    expect(lines[3]!.objects![0]).toMatchObject({
      kind: 'Service',
      name: 'gap-api',
      selector: { 'app.kubernetes.io/name': 'gap-api', 'app.kubernetes.io/color': 'green' },
      annotations: { 'gpt-agent-platform/previous-color': 'blue' },
    });
    expect(lines[0]!.kubectl![1]).toBe('gap-production');
  });

  it('rollback: one command flips the Service back to the previous colour', () => {
    const { code, lines, stderr } = bluegreen(['rollback', ...staging], {
      'service/gap-api': service('green', 'blue'),
      'deployment/gap-api-blue': deployment('gap-api-blue', 2),
      'deployment/gap-api-green': deployment('gap-api-green', 2),
    });
    expect(code, stderr).toBe(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]!.kubectl!.slice(2, 7)).toEqual(['patch', 'service', 'gap-api', '--type=merge', '--patch']);
    expect(JSON.parse(lines[0]!.kubectl![7]!)).toEqual({
      metadata: { annotations: { 'gpt-agent-platform/previous-color': 'green' } },
      spec: { selector: { 'app.kubernetes.io/color': 'blue' } },
    });
  });

  it('rollback after retire: scales the previous colour back up and waits before sending traffic', () => {
    const { code, lines } = bluegreen(['rollback', ...staging], {
      'service/gap-api': service('green', 'blue'),
      'deployment/gap-api-blue': deployment('gap-api-blue', 0),
      'deployment/gap-api-green': deployment('gap-api-green', 2),
    });
    expect(code).toBe(0);
    expect(lines.map((l) => l.kubectl!.slice(2, 5).join(' '))).toEqual(['scale deployment/gap-api-blue --replicas=2', 'rollout status deployment/gap-api-blue', 'patch service gap-api']);
  });

  it('rollback with no previous colour refuses and changes nothing', () => {
    const { code, lines, stderr } = bluegreen(['rollback', ...staging], { 'service/gap-api': service('blue') });
    expect(code).toBe(1);
    expect(lines).toEqual([]);
    expect(stderr).toMatch(/nothing to roll back to/);
  });

  it('retire scales the colour that is not serving to zero', () => {
    const { code, lines } = bluegreen(['retire', ...staging], { 'service/gap-api': service('green', 'blue') });
    expect(code).toBe(0);
    expect(lines.map((l) => l.kubectl!.slice(2))).toEqual([['scale', 'deployment/gap-api-blue', '--replicas=0']]);
  });

  it('refuses an image that is not pinned by digest', () => {
    const { code, lines, stderr } = bluegreen(['api', ...staging, '--image', 'ghcr.io/example/gpt-agent-platform:v1.2.3']);
    expect(code).toBe(1);
    expect(lines).toEqual([]);
    expect(stderr).toMatch(/must be pinned by digest/);
  });
});
