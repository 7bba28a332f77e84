/**
 * docker/compose.yaml without a Docker engine: `docker-compose config` (Debian's docker-compose
 * 1.29, which validates against the Compose Specification and interpolates the env file) when it
 * is installed; the start order; every variable the processes read passed through; each
 * third-party image given only environment its documented entrypoint reads; and the alert path
 * from Prometheus to Alertmanager, checked with amtool. The start order itself is run for real,
 * as processes, in tests/stack/production-processes.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { configReference } from '../../lib/config.js';
import { requireOrWarn } from '../support/ops-tools.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const composeFile = path.join(root, 'docker', 'compose.yaml');

type Service = {
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  volumes?: string[];
};
const compose = parseYaml(readFileSync(composeFile, 'utf8'), { merge: true }) as { services: Record<string, Service> };
const services = compose.services;

/** What docker/.env must define: the `${VAR:?…}` references. */
const requiredVariables = [...new Set([...readFileSync(composeFile, 'utf8').matchAll(/\$\{(\w+):\?/g)].map((m) => m[1]!))];
const sampleEnv = Object.fromEntries(requiredVariables.map((name) => [name, name === 'API_PUBLIC_URL' ? 'https://agents.example.com' : `sample-${name.toLowerCase()}`]));

function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
}

function composeConfig(env: Record<string, string>): { status: number | null; output: string; config?: { services: Record<string, Service> } } {
  // docker-compose 1.29 predates the spec's top-level `name`; the project name is given with -p instead.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'compose-check-'));
  const copy = path.join(root, 'docker', `.compose-check-${process.pid}.yaml`);
  writeFileSync(copy, readFileSync(composeFile, 'utf8').replace(/^name: .*$/m, ''));
  try {
    const result = spawnSync('docker-compose', ['-p', 'gpt-agent-platform', '-f', copy, 'config'], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, HOME: dir, ...env },
    });
    const output = result.stdout + result.stderr;
    return { status: result.status, output, ...(result.status === 0 ? { config: parseYaml(result.stdout) as { services: Record<string, Service> } } : {}) };
  } finally {
    spawnSync('rm', ['-f', copy]);
  }
}

/** Settings without a default: an operator has to be able to set each of them. */
function settingsWithoutDefault(shape: Record<string, z.ZodType>): string[] {
  return Object.entries(shape)
    .filter(([, schema]) => {
      const result = schema.safeParse(undefined);
      return !result.success || result.data === undefined;
    })
    .map(([name]) => name);
}

describe('docker/compose.yaml', () => {
  it('passes docker-compose config, and refuses to render without a required secret, naming it', () => {
    if (!has('docker-compose')) return requireOrWarn('docker-compose', 'REQUIRE_DOCKER_COMPOSE', 'apt-get install docker-compose');
    const ok = composeConfig(sampleEnv);
    expect(ok.status, ok.output).toBe(0);
    // Interpolated as compose would run it: the API's settings arrive with their values.
    expect(ok.config!.services.api!.environment).toMatchObject({ API_PUBLIC_URL: 'https://agents.example.com', TEMPORAL_NAMESPACE: 'default' });
    expect(ok.config!.services.setup!.environment).toMatchObject({ TEMPORAL_NAMESPACE_RETENTION_DAYS: '30' });

    const { API_PUBLIC_URL: _omitted, ...withoutPublicUrl } = sampleEnv;
    const refused = composeConfig(withoutPublicUrl);
    expect(refused.status).not.toBe(0);
    expect(refused.output).toContain('API_PUBLIC_URL');
  });

  it('starts in production order: schema, Temporal, setup (namespace, search attributes, migrations), then the processes', () => {
    expect(services.temporal!.depends_on).toMatchObject({ 'temporal-schema': { condition: 'service_completed_successfully' } });
    expect(services.setup!.depends_on).toMatchObject({ postgres: { condition: 'service_healthy' }, temporal: { condition: expect.any(String) } });
    expect(services.setup!.command).toEqual(['node', '--import', 'tsx', 'scripts/deploy-setup.ts']);
    for (const name of ['api', 'worker', 'codec-server', 'temporal-ui']) {
      expect(services[name]!.depends_on, name).toMatchObject({ setup: { condition: 'service_completed_successfully' } });
    }
    // The namespace is created by setup with a retention period, not by the server image.
    expect(services.setup!.environment).toHaveProperty('TEMPORAL_NAMESPACE_RETENTION_DAYS');
    expect(services.setup!.environment!.TEMPORAL_NAMESPACE).toBe(services.api!.environment!.TEMPORAL_NAMESPACE);
    expect(services.setup!.environment!.TEMPORAL_NAMESPACE).toBe(services.worker!.environment!.TEMPORAL_NAMESPACE);
  });

  it.each([
    // The image serves the console it was built with from the default CONSOLE_DIR.
    { service: 'api', shape: configReference.api, notHere: ['CONSOLE_DIR'] },
    { service: 'worker', shape: configReference.worker, notHere: [] as string[] },
    { service: 'codec-server', shape: configReference.codecServer, notHere: [] as string[] },
    // Setup writes no workflow payloads, so it has no use for the codec keys.
    { service: 'setup', shape: configReference.setup, notHere: ['TEMPORAL_CODEC_KEYS', 'TEMPORAL_CODEC_ACTIVE_KEY_ID'] },
  ])('passes the $service every setting it has no default for', ({ service, shape, notHere }) => {
    const passed = Object.keys(services[service]!.environment ?? {});
    const missing = settingsWithoutDefault(shape as Record<string, z.ZodType>).filter((name) => !notHere.includes(name) && !passed.includes(name));
    expect(missing).toEqual([]);
  });

  // What each third-party image's entrypoint reads (temporalio/server: docker/config_template.yaml
  // of temporalio/temporal; admin-tools: temporal-sql-tool's flags' env names; ui: its
  // config-template; prometheus, alertmanager and grafana are configured by files and GF_*).
  const documented: Record<string, { image: RegExp; env: string[] }> = {
    temporal: {
      image: /^temporalio\/server:1\.30\.\d+$/,
      env: ['DB', 'DB_PORT', 'POSTGRES_USER', 'POSTGRES_PWD', 'POSTGRES_SEEDS', 'DBNAME', 'VISIBILITY_DBNAME', 'BIND_ON_IP', 'TEMPORAL_BROADCAST_ADDRESS', 'DYNAMIC_CONFIG_FILE_PATH', 'LOG_LEVEL', 'NUM_HISTORY_SHARDS'],
    },
    'temporal-schema': { image: /^temporalio\/admin-tools:1\.30\.\d+$/, env: ['SQL_PLUGIN', 'SQL_HOST', 'SQL_PORT', 'SQL_USER', 'SQL_PASSWORD'] },
    'temporal-ui': { image: /^temporalio\/ui:2\.(3[8-9]|[4-9]\d)\.\d+$/, env: ['TEMPORAL_ADDRESS', 'TEMPORAL_UI_PORT', 'TEMPORAL_CORS_ORIGINS', 'TEMPORAL_CODEC_ENDPOINT'] },
  };

  it.each(Object.keys(documented))('gives %s only environment its image documents', (name) => {
    const service = services[name]!;
    expect(service.image).toMatch(documented[name]!.image);
    const unknown = Object.keys(service.environment ?? {}).filter((key) => !documented[name]!.env.includes(key));
    // DEFAULT_NAMESPACE belonged to the deprecated auto-setup image: temporalio/server ignores it.
    expect(unknown).toEqual([]);
  });
});

describe('docker/k8s/alertmanager/alertmanager.yml', () => {
  const config = path.join(root, 'docker', 'k8s', 'alertmanager', 'alertmanager.yml');

  it('is where Prometheus sends alerts, and runs in the stack with its config mounted', () => {
    const prometheus = parseYaml(readFileSync(path.join(root, 'docker', 'prometheus', 'prometheus.yml'), 'utf8')) as {
      alerting: { alertmanagers: Array<{ static_configs: Array<{ targets: string[] }> }> };
    };
    expect(prometheus.alerting.alertmanagers.flatMap((a) => a.static_configs.flatMap((s) => s.targets))).toEqual(['alertmanager:9093']);
    expect(services.alertmanager!.volumes).toEqual(expect.arrayContaining(['./k8s/alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro']));
  });

  it('routes every severity the rules use, "page" to the on-call receiver (amtool)', () => {
    const severities = [...new Set([...readFileSync(path.join(root, 'docker', 'prometheus', 'alerts.yml'), 'utf8').matchAll(/severity: (\w+)/g)].map((m) => m[1]!))];
    expect(severities.sort()).toEqual(['page', 'ticket']);
    if (!has('amtool')) return requireOrWarn('amtool', 'REQUIRE_AMTOOL', 'apt-get install prometheus-alertmanager');
    const check = spawnSync('amtool', ['check-config', config], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    const route = (severity: string) => spawnSync('amtool', ['config', 'routes', 'test', `--config.file=${config}`, `severity=${severity}`, 'alertname=GapApiServerErrors'], { encoding: 'utf8' }).stdout.trim();
    expect(route('page')).toBe('page');
    expect(route('ticket')).toBe('ticket');
    // No secret in the file: every receiver reads its key or URL from a mounted file.
    const text = readFileSync(config, 'utf8');
    expect(text).toMatch(/routing_key_file:/);
    expect(text).toMatch(/api_url_file:/);
    expect(text).not.toMatch(/routing_key:|api_url:|hooks\.slack\.com/);
  });
});
