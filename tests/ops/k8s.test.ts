/**
 * What an SRE checks in docker/k8s before accepting it, read from the manifests (their schema is
 * checked by tools/k8s-validate in tests/ops/overlays.test.ts): one Secret per process holding
 * only variables that process reads (the API never sees the migration superuser), disruption
 * budgets and an autoscaler, both worker metrics ports scraped under the job names the alerts
 * use, the codec server reachable from the Temporal UI only, egress limited, no service account
 * tokens, pinned image versions, and Alertmanager deployed with the routing file compose uses.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { configReference } from '../../lib/config.js';

// Manifests are free-form YAML; the assertions below are the schema we rely on.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type K8sObject = Record<string, any>;

const root = fileURLToPath(new URL('../..', import.meta.url));
const dir = path.join(root, 'docker', 'k8s');
const load = (file: string) => parseAllDocuments(readFileSync(path.join(dir, file), 'utf8')).map((d) => d.toJS() as K8sObject);
const objects = readdirSync(dir)
  .filter((f) => f.endsWith('.yaml') && !['kustomization.yaml', 'secret.example.yaml'].includes(f))
  .flatMap(load);
const secrets = new Map(load('secret.example.yaml').map((s) => [s.metadata.name as string, Object.keys(s.stringData ?? {})]));
const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'gpt-agent-platform')!;
const find = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name)!;
const podSpecs = objects.filter((o) => o.spec?.template?.spec).map((o) => ({ id: `${o.kind}/${o.metadata.name}`, object: o, pod: o.spec.template.spec }));

function secretsOf(pod: K8sObject): string[] {
  return [
    ...new Set(
      pod.containers.flatMap((c: K8sObject) => [
        ...(c.envFrom ?? []).map((f: K8sObject) => f.secretRef?.name),
        ...(c.env ?? []).map((e: K8sObject) => e.valueFrom?.secretKeyRef?.name),
      ]),
    ),
  ].filter(Boolean) as string[];
}

/** Variables a process's schema reads, and those it cannot start without. */
function variables(shape: Record<string, z.ZodType>): { reads: string[]; required: string[] } {
  return {
    reads: Object.keys(shape),
    required: Object.entries(shape)
      .filter(([, schema]) => !schema.safeParse(undefined).success)
      .map(([name]) => name),
  };
}

describe('docker/k8s secrets', () => {
  const processes = [
    // Required in production on top of the schema's own (lib/config.ts cross-checks).
    { workload: 'Deployment/gap-api', secret: 'gpt-agent-platform.api', shape: configReference.api, productionRequired: ['TEMPORAL_CODEC_KEYS'] },
    { workload: 'Deployment/gap-worker', secret: 'gpt-agent-platform.worker', shape: configReference.worker, productionRequired: ['TEMPORAL_CODEC_KEYS', 'LLM_API_KEY'] },
    { workload: 'Job/gap-setup', secret: 'gpt-agent-platform.setup', shape: configReference.setup, productionRequired: [] },
    { workload: 'Deployment/gap-codec-server', secret: 'gpt-agent-platform.codec-server', shape: configReference.codecServer, productionRequired: [] },
  ];

  it.each(processes)('$workload reads one Secret of its own, holding only variables it reads, and gets everything it requires', ({ workload, secret, shape, productionRequired }) => {
    const { pod } = podSpecs.find((p) => p.id === workload)!;
    expect(secretsOf(pod)).toEqual([secret]);
    const keys = secrets.get(secret)!;
    expect(keys, `${secret} is documented in secret.example.yaml`).toBeDefined();
    const { reads, required } = variables(shape as Record<string, z.ZodType>);
    expect(keys.filter((k) => !reads.includes(k))).toEqual([]);
    const container = pod.containers[0];
    const fromConfigMap = (container.envFrom ?? []).some((f: K8sObject) => f.configMapRef) ? Object.keys(configMap.data) : [];
    const provided = new Set([...keys, ...fromConfigMap, ...(container.env ?? []).map((e: K8sObject) => e.name)]);
    expect([...required, ...productionRequired].filter((name) => !provided.has(name))).toEqual([]);
  });

  it('keeps the migration superuser to the setup Job, and the LLM key and codec tokens to their processes', () => {
    const holders = (key: string) => [...secrets].filter(([, keys]) => keys.includes(key)).map(([name]) => name);
    expect(holders('DATABASE_MIGRATION_URL')).toEqual(['gpt-agent-platform.setup']);
    expect(holders('LLM_API_KEY')).toEqual(['gpt-agent-platform.worker']);
    expect(holders('CODEC_SERVER_TOKENS')).toEqual(['gpt-agent-platform.codec-server']);
    expect(holders('SUPABASE_JWT_SECRET')).toEqual(['gpt-agent-platform.api']);
    // deploy:promote replays histories (codec keys) and touches no database.
    expect(secrets.get('gpt-agent-platform.promote')).toEqual(['TEMPORAL_CODEC_KEYS']);
  });
});

describe('docker/k8s availability and scaling', () => {
  it('gives the API and the workers a disruption budget that selects their pods', () => {
    for (const name of ['gap-api', 'gap-worker']) {
      const budget = find('PodDisruptionBudget', name);
      expect(budget, name).toBeDefined();
      const labels = find('Deployment', name).spec.template.metadata.labels;
      expect(labels).toMatchObject(budget.spec.selector.matchLabels);
      expect(budget.spec.minAvailable ?? budget.spec.maxUnavailable).toBeGreaterThanOrEqual(1);
    }
  });

  it('autoscales the API on CPU from at least two replicas', () => {
    const hpa = find('HorizontalPodAutoscaler', 'gap-api');
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: 'gap-api' });
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
    expect(hpa.spec.maxReplicas).toBeGreaterThan(hpa.spec.minReplicas);
    expect(hpa.spec.metrics).toEqual([expect.objectContaining({ type: 'Resource', resource: expect.objectContaining({ name: 'cpu' }) })]);
    // Requests are what utilisation is measured against.
    expect(find('Deployment', 'gap-api').spec.template.spec.containers[0].resources.requests.cpu).toBeTruthy();
  });
});

describe('docker/k8s metrics', () => {
  it('scrapes both worker ports and the API under the job names the alert rules use', () => {
    const monitor = find('PodMonitor', 'gpt-agent-platform');
    const alerts = readFileSync(path.join(root, 'docker', 'prometheus', 'alerts.yml'), 'utf8');
    const jobs = alerts.match(/job=~"([^"]+)"/)![1]!.split('|');
    const endpoints = monitor.spec.podMetricsEndpoints as K8sObject[];
    const worker = find('Deployment', 'gap-worker').spec.template.spec.containers[0];
    for (const port of worker.ports) expect(endpoints.map((e) => e.port), port.name).toContain(port.name);
    const selected = monitor.spec.selector.matchExpressions[0].values as string[];
    expect(selected.sort()).toEqual(['gap-api', 'gap-worker']);
    // The SDK's endpoint is job temporal-sdk; ours take the pod's name label (gap-api, gap-worker).
    const sdk = endpoints.find((e) => e.port === 'sdk-metrics')!;
    expect(sdk.relabelings).toContainEqual({ targetLabel: 'job', replacement: 'temporal-sdk' });
    const ours = endpoints.find((e) => e.port === 'metrics')!;
    expect(ours.relabelings).toContainEqual({ sourceLabels: ['__meta_kubernetes_pod_label_app_kubernetes_io_name'], targetLabel: 'job' });
    expect([...selected, 'temporal-sdk'].sort()).toEqual([...jobs].sort());
  });
});

describe('docker/k8s network policies', () => {
  const policies = objects.filter((o) => o.kind === 'NetworkPolicy');
  const selects = (policy: K8sObject, name: string) => {
    const sel = policy.spec.podSelector;
    if (sel.matchLabels?.['app.kubernetes.io/part-of'] === 'gpt-agent-platform') return true;
    if (sel.matchLabels?.['app.kubernetes.io/name']) return sel.matchLabels['app.kubernetes.io/name'] === name;
    return (sel.matchExpressions ?? []).some((e: K8sObject) => e.key === 'app.kubernetes.io/name' && e.values.includes(name));
  };

  it('denies everything in and out by default', () => {
    const deny = policies.find((p) => p.metadata.name === 'gap-default-deny')!;
    expect(deny.spec.policyTypes.sort()).toEqual(['Egress', 'Ingress']);
    expect(deny.spec.ingress).toBeUndefined();
    expect(deny.spec.egress).toBeUndefined();
  });

  it('opens the codec server port only to the Temporal UI', () => {
    const rules = policies.filter((p) => selects(p, 'gap-codec-server')).flatMap((p) => (p.spec.ingress ?? []) as K8sObject[]);
    const toCodec = rules.filter((r) => (r.ports ?? []).some((p: K8sObject) => p.port === 8234) || !r.ports);
    expect(toCodec).toHaveLength(1);
    expect(toCodec[0]!.from).toContainEqual({
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'temporal' } },
      podSelector: { matchLabels: { 'app.kubernetes.io/component': 'web' } },
    });
    // No rule anywhere opens 8234 to every source.
    for (const policy of policies) for (const rule of policy.spec.ingress ?? []) if ((rule.ports ?? []).some((p: K8sObject) => p.port === 8234)) expect(rule.from, policy.metadata.name).toBeDefined();
  });

  it('lets each process out only where it must go', () => {
    const egressPorts = (name: string) =>
      policies
        .filter((p) => selects(p, name))
        .flatMap((p) => (p.spec.egress ?? []) as K8sObject[])
        .flatMap((r) => (r.ports ?? []).map((p: K8sObject) => p.port as number));
    expect(new Set(egressPorts('gap-codec-server'))).toEqual(new Set([53]));
    expect(new Set(egressPorts('gap-setup'))).toEqual(new Set([53, 5432, 7233]));
    expect(new Set(egressPorts('gap-worker'))).toEqual(new Set([53, 5432, 7233, 443]));
    expect(new Set(egressPorts('gap-api'))).toEqual(new Set([53, 5432, 7233, 443]));
    // HTTPS goes to public addresses, never into the cluster's private ranges.
    const https = policies.find((p) => p.metadata.name === 'gap-egress-https-public')!;
    expect(https.spec.egress[0].to[0].ipBlock.except).toEqual(expect.arrayContaining(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16']));
  });
});

describe('docker/k8s pods and images', () => {
  it.each(podSpecs.map((p) => p.id))('%s mounts no service account token and runs a pinned image version', (id) => {
    const { pod } = podSpecs.find((p) => p.id === id)!;
    expect(pod.automountServiceAccountToken).toBe(false);
    for (const container of pod.containers) {
      expect(container.image).toMatch(/(:v?\d+\.\d+\.\d+|@sha256:[0-9a-f]{64})$/);
      expect(container.image).not.toMatch(/:latest$/);
    }
  });

  it('runs Alertmanager with the routing file compose mounts and its receivers from a Secret', () => {
    const kustomization = readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8');
    expect(kustomization).toMatch(/- name: gap-alertmanager\n\s+files: \[alertmanager\/alertmanager\.yml\]/);
    const pod = find('Deployment', 'gap-alertmanager').spec.template.spec;
    expect(pod.volumes).toEqual(
      expect.arrayContaining([
        { name: 'config', configMap: { name: 'gap-alertmanager' } },
        { name: 'secrets', secret: { secretName: 'gpt-agent-platform.alertmanager' } },
      ]),
    );
    expect(secrets.get('gpt-agent-platform.alertmanager')!.sort()).toEqual(['pagerduty-routing-key', 'slack-webhook-url']);
    const routing = readFileSync(path.join(dir, 'alertmanager', 'alertmanager.yml'), 'utf8');
    for (const key of secrets.get('gpt-agent-platform.alertmanager')!) expect(routing).toContain(`/etc/alertmanager/secrets/${key}`);
  });
});
