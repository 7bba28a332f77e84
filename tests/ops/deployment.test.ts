/**
 * What can be validated without a Docker engine or a cluster: the compose file, the Kubernetes
 * manifests, the Dockerfile and the Prometheus config parse and carry what operations relies on
 * (loopback-only ports, resource limits, probes, preStop hooks, non-root, every referenced file
 * present, scrape jobs matching the alert rules, commands pointing at real entry points).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';

const root = fileURLToPath(new URL('../..', import.meta.url));
const docker = path.join(root, 'docker');

type Service = {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[] | string;
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, unknown> | string[];
  environment?: Record<string, string>;
  deploy?: { resources?: { limits?: { cpus?: string; memory?: string } } };
};

const compose = parseYaml(readFileSync(path.join(docker, 'compose.yaml'), 'utf8'), { merge: true }) as { services: Record<string, Service> };

/**
 * `node --import tsx <file>` commands must name files that exist. Node itself must run the
 * file (not the tsx CLI, which relays signals through a child process) so SIGTERM reaches it.
 */
function entryPoint(command: Service['command']): string | undefined {
  const parts = Array.isArray(command) ? command : [];
  if (parts.includes('node_modules/.bin/tsx')) throw new Error(`run sources with node --import tsx, not the tsx CLI: ${parts.join(' ')}`);
  return parts[0] === 'node' && parts[1] === '--import' && parts[2] === 'tsx' ? parts[3] : undefined;
}

describe('docker/compose.yaml', () => {
  it('runs the whole stack', () => {
    expect(Object.keys(compose.services).sort()).toEqual(
      expect.arrayContaining(['postgres', 'temporal-schema', 'temporal', 'temporal-ui', 'setup', 'api', 'worker', 'codec-server', 'prometheus', 'grafana']),
    );
    // Temporal persists in Postgres, with the schema job before it.
    expect(compose.services.temporal!.environment).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'postgres' });
    expect(compose.services.temporal!.depends_on).toMatchObject({ 'temporal-schema': { condition: 'service_completed_successfully' } });
    expect(compose.services.api!.depends_on).toMatchObject({ setup: { condition: 'service_completed_successfully' } });
    // The UI decrypts through the codec server.
    expect(compose.services['temporal-ui']!.environment!.TEMPORAL_CODEC_ENDPOINT).toMatch(/^http:\/\/127\.0\.0\.1:8234\//);
  });

  it('binds every published port to loopback and limits every service', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      for (const port of service.ports ?? []) expect(port, `${name} port ${port}`).toMatch(/^127\.0\.0\.1:\d+:\d+$/);
      expect(service.deploy?.resources?.limits?.memory, `${name} memory limit`).toMatch(/^\d+[mg]$/);
      expect(service.deploy?.resources?.limits?.cpus, `${name} cpu limit`).toMatch(/^\d+(\.\d+)?$/);
      expect(service.image ?? service.build, `${name} image`).toBeTruthy();
    }
  });

  it('references files and entry points that exist, and depends only on defined services', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      for (const volume of service.volumes ?? []) {
        const source = volume.split(':')[0]!;
        if (source.startsWith('.')) expect(existsSync(path.join(docker, source)), `${name}: ${source}`).toBe(true);
      }
      const entry = entryPoint(service.command);
      if (entry) expect(existsSync(path.join(root, entry)), `${name}: ${entry}`).toBe(true);
      const deps = Array.isArray(service.depends_on) ? service.depends_on : Object.keys(service.depends_on ?? {});
      for (const dep of deps) expect(Object.keys(compose.services), `${name} depends on ${dep}`).toContain(dep);
      if (service.build) expect(existsSync(path.join(docker, service.build.context, service.build.dockerfile))).toBe(true);
    }
  });

  it('passes every variable the app requires in production', () => {
    const api = compose.services.api!.environment!;
    const worker = compose.services.worker!.environment!;
    for (const env of [api, worker]) {
      for (const key of ['DATABASE_URL', 'TEMPORAL_ADDRESS', 'TEMPORAL_CODEC_KEYS', 'APP_ENV']) expect(env, key).toHaveProperty(key);
    }
    expect(api).toHaveProperty('SUPABASE_JWT_SECRET');
    expect(worker).toHaveProperty('LLM_API_KEY');
    expect(worker.TEMPORAL_METRICS_BIND_ADDRESS).toBe('0.0.0.0:9464');
  });
});

describe('docker/prometheus', () => {
  it('scrapes the jobs the alert rules name', () => {
    const config = parseYaml(readFileSync(path.join(docker, 'prometheus', 'prometheus.yml'), 'utf8')) as {
      scrape_configs: Array<{ job_name: string; static_configs: Array<{ targets: string[] }> }>;
    };
    const jobs = config.scrape_configs.map((c) => c.job_name);
    const alerts = readFileSync(path.join(docker, 'prometheus', 'alerts.yml'), 'utf8');
    for (const job of alerts.match(/job=~"([^"]+)"/)![1]!.split('|')) expect(jobs).toContain(job);
    // Targets are the ports the processes listen on (api/main.ts, workers/main.ts defaults in compose).
    expect(config.scrape_configs.flatMap((c) => c.static_configs.flatMap((s) => s.targets))).toEqual(['api:9091', 'worker:9092', 'worker:9464']);
  });

  it('passes promtool check config when promtool is installed', () => {
    if (spawnSync('sh', ['-c', 'command -v promtool']).status !== 0) {
      expect(process.env.REQUIRE_PROMTOOL, 'promtool is not installed (apt-get install prometheus)').not.toBe('1');
      return;
    }
    const result = spawnSync('promtool', ['check', 'config', path.join(docker, 'prometheus', 'prometheus.yml')], { encoding: 'utf8' });
    expect(result.status, result.stdout + result.stderr).toBe(0);
  });
});

describe('docker/Dockerfile', () => {
  const dockerfile = readFileSync(path.join(docker, 'Dockerfile'), 'utf8');
  it('is multi-stage, runs as a non-root user and has a healthcheck', () => {
    expect(dockerfile.match(/^FROM /gm)!.length).toBeGreaterThanOrEqual(2);
    const finalStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    expect(finalStage).toMatch(/^USER (node|\d{3,})$/m);
    expect(finalStage).toMatch(/^HEALTHCHECK /m);
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    // Every source folder the processes import is copied into the image.
    for (const dir of ['api', 'activities', 'integrations', 'lib', 'workers', 'workflows', 'supabase']) expect(finalStage).toContain(`./${dir}`);
    // Node is PID 1 and runs the entry point itself, so SIGTERM reaches the server.
    expect(finalStage).toMatch(/^CMD \["node", "--import", "tsx", "api\/main\.ts"\]$/m);
  });
});

// Manifests are free-form YAML; the assertions below are the schema we rely on.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type K8sObject = Record<string, any>;

describe('docker/k8s', () => {
  const docs = readdirSync(path.join(docker, 'k8s'))
    // kustomization.yaml lists the manifests; the overlays are tested in tests/ops/overlays.test.ts.
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .flatMap((file) => parseAllDocuments(readFileSync(path.join(docker, 'k8s', file), 'utf8')).map((d) => ({ file, doc: d.toJS() as K8sObject })));

  it('parses, and every object has apiVersion, kind and metadata.name', () => {
    expect(docs.length).toBeGreaterThanOrEqual(6);
    for (const { file, doc } of docs) {
      expect(doc.apiVersion, file).toBeTruthy();
      expect(doc.kind, file).toBeTruthy();
      expect(doc.metadata?.name, file).toBeTruthy();
    }
  });

  it('gives every Deployment probes, a preStop hook, requests and limits, and a non-root security context', () => {
    // Our processes; Alertmanager (a third-party image) is checked in tests/ops/k8s.test.ts.
    const deployments = docs.filter((d) => d.doc.kind === 'Deployment' && d.doc.metadata.name !== 'gap-alertmanager');
    expect(deployments.map((d) => d.doc.metadata.name).sort()).toEqual(['gap-api', 'gap-codec-server', 'gap-worker']);
    for (const { doc } of deployments) {
      const pod = doc.spec.template.spec;
      expect(doc.spec.template.metadata.labels['app.kubernetes.io/name']).toBe(doc.spec.selector.matchLabels['app.kubernetes.io/name']);
      expect(pod.securityContext.runAsNonRoot, doc.metadata.name).toBe(true);
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(0);
      for (const container of pod.containers) {
        const where = `${doc.metadata.name}/${container.name}`;
        expect(container.readinessProbe, where).toBeTruthy();
        expect(container.livenessProbe, where).toBeTruthy();
        expect(container.lifecycle?.preStop, where).toBeTruthy();
        for (const kind of ['requests', 'limits']) {
          expect(container.resources?.[kind]?.cpu, `${where} ${kind}.cpu`).toBeTruthy();
          expect(container.resources?.[kind]?.memory, `${where} ${kind}.memory`).toBeTruthy();
        }
        expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
        const entry = entryPoint(container.command);
        expect(entry, `${where}: ${container.command.join(' ')}`).toBeDefined();
        expect(existsSync(path.join(root, entry!)), `${where}: ${entry}`).toBe(true);
        // Probes name ports the container declares.
        const portNames = (container.ports ?? []).map((p: { name: string }) => p.name);
        for (const probe of [container.readinessProbe, container.livenessProbe]) expect(portNames).toContain(probe.httpGet.port);
      }
    }
    // The worker's grace period covers its configured activity drain.
    const worker = deployments.find((d) => d.doc.metadata.name === 'gap-worker')!.doc.spec.template.spec;
    const grace = Number(worker.containers[0].env.find((e: { name: string }) => e.name === 'WORKER_SHUTDOWN_GRACE_MS').value) / 1000;
    expect(worker.terminationGracePeriodSeconds).toBeGreaterThan(grace);
  });
});

describe('configuration docs', () => {
  it.each(['docs/configuration.md', 'README.md'])('%s names every variable the configuration schemas accept', async (file) => {
    const { configReference } = await import('../../lib/config.js');
    const documented = readFileSync(path.join(root, file), 'utf8');
    const variables = new Set(Object.values(configReference).flatMap((shape) => Object.keys(shape)));
    const missing = [...variables].filter((name) => !documented.includes(`\`${name}\``));
    expect(missing).toEqual([]);
  });
});
