/**
 * The system this replaces shipped alert rules on metrics nothing emitted. Here every metric an
 * alert rule or a dashboard panel in docker/ references must show up, with samples, on the real
 * endpoints (the API's and worker's /metrics and the Temporal SDK's exporter) after the code
 * paths behind them ran. The rules are also checked by promtool (Debian's `prometheus` package;
 * .ci/run installs it, and the test insists on it when REQUIRE_PROMTOOL=1).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Worker } from '@temporalio/worker';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { buildApp, type App } from '../../api/app.js';
import { CrmHttpClient } from '../../integrations/crm/http.js';
import { startMetricsServer, trackDatabaseMetrics, type MetricsServer } from '../../lib/metrics.js';
import { freePort } from '../../scripts/stack/ports.js';
import { startFakeLlm, type FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { TEST_JWT_SECRET } from '../support/auth.js';
import { adminPool, appPool, attempt, createOrgWithMembers } from '../support/db.js';
import { connectTestTemporal, testLogger, uniqueTaskQueue, type TestTemporal } from '../support/temporal.js';
import { scenarios, startWorkers } from '../replay/scenarios/agent-run.js';
import * as crmScenarios from '../replay/scenarios/crm-sync.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const alertsFile = path.join(root, 'docker', 'prometheus', 'alerts.yml');
const dashboardFile = path.join(root, 'docker', 'grafana', 'dashboards', 'gpt-agent-platform.json');

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

function alertRules(): AlertRule[] {
  const doc = parseYaml(readFileSync(alertsFile, 'utf8')) as { groups: Array<{ name: string; rules: AlertRule[] }> };
  return doc.groups.flatMap((g) => g.rules);
}

function panelExpressions(): Array<{ panel: string; expr: string }> {
  const dashboard = JSON.parse(readFileSync(dashboardFile, 'utf8')) as { panels: Array<{ title: string; targets?: Array<{ expr: string }> }> };
  return dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
}

/** Metric names in a PromQL expression: identifiers of our namespaces, not functions or labels. */
function metricNames(expr: string): string[] {
  const withoutMatchers = expr.replace(/\{[^}]*\}/g, '').replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  return [...new Set(withoutMatchers.match(/\b(?:gap|temporal|process|nodejs|up)(?:_[a-z0-9_]+)?\b/g) ?? [])];
}

/** Names that have at least one sample line in a Prometheus text exposition. */
function sampledNames(exposition: string): Set<string> {
  return new Set(
    exposition
      .split('\n')
      .filter((line) => line && !line.startsWith('#'))
      .map((line) => line.split(/[{\s]/, 1)[0]!),
  );
}

describe('alert rules and dashboard', () => {
  it('are well-formed: every rule has a name, an expression, a severity and a runbook summary', () => {
    const rules = alertRules();
    expect(rules.length).toBeGreaterThanOrEqual(8);
    for (const rule of rules) {
      expect(rule.alert, JSON.stringify(rule)).toMatch(/^[A-Z][A-Za-z0-9]+$/);
      expect(rule.expr.trim().length).toBeGreaterThan(0);
      expect(['page', 'ticket']).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
      expect(rule.annotations?.runbook, rule.alert).toMatch(/^docs\/operations\.md#/);
    }
    expect(panelExpressions().length).toBeGreaterThanOrEqual(8);
  });

  it('link runbooks that exist in docs/operations.md', () => {
    const slug = (heading: string) => heading.trim().toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-');
    const anchors = new Set(
      readFileSync(path.join(root, 'docs', 'operations.md'), 'utf8')
        .split('\n')
        .filter((line) => /^#{2,4} /.test(line))
        .map((line) => slug(line.replace(/^#+ /, ''))),
    );
    for (const rule of alertRules()) expect(anchors, `${rule.alert}: ${rule.annotations?.runbook}`).toContain(rule.annotations!.runbook!.split('#')[1]);
  });

  it('pass promtool check rules', () => {
    const which = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' });
    if (which.status !== 0) {
      // A laptop without Debian's prometheus package: CI (.ci/run) installs it and sets REQUIRE_PROMTOOL=1.
      expect(process.env.REQUIRE_PROMTOOL, 'promtool is not installed (apt-get install prometheus)').not.toBe('1');
      console.warn('promtool not found: rule syntax checked by YAML parsing only');
      return;
    }
    const result = spawnSync('promtool', ['check', 'rules', alertsFile], { encoding: 'utf8' });
    expect(result.stdout + result.stderr).toContain('SUCCESS');
    expect(result.status, result.stdout + result.stderr).toBe(0);
  });
});

describe('every metric an alert or panel references is emitted', () => {
  let temporal: TestTemporal;
  let llm: FakeLlmServer;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let workers: Worker[] = [];
  let running: Promise<void>[] = [];
  let app: App;
  let metrics: MetricsServer;
  let sdkMetricsUrl: string;
  const taskQueue = uniqueTaskQueue('metrics');
  const crmTaskQueue = uniqueTaskQueue('metrics-crm');

  beforeAll(async () => {
    const sdkPort = await freePort('127.0.0.1');
    sdkMetricsUrl = `http://127.0.0.1:${sdkPort}/metrics`;
    temporal = await connectTestTemporal({ metricsBindAddress: `127.0.0.1:${sdkPort}` });
    llm = await startFakeLlm();
    pool = appPool();
    admin = adminPool();
    workers = [
      ...(await startWorkers({ temporal, admin, pool, llm, taskQueue })),
      ...(await crmScenarios.startWorkers({ temporal, admin, pool, llm, taskQueue: crmTaskQueue })),
    ];
    running = workers.map((w) => w.run());
    app = await buildApp({ pool, temporal: temporal.client, logger: testLogger, auth: { jwtSecret: TEST_JWT_SECRET }, agentRunsTaskQueue: taskQueue });
    metrics = await startMetricsServer({ host: '127.0.0.1', port: 0 });
    trackDatabaseMetrics(pool);
  });

  afterAll(async () => {
    workers.forEach((w) => w.shutdown());
    await Promise.allSettled(running);
    await app?.close();
    await metrics?.close();
    await crmScenarios.close();
    await llm?.close();
    await temporal?.close();
    await pool?.end();
    await admin?.end();
  });

  it('cross-tenant aggregates are readable by the metrics collector but not by a tenant principal', async () => {
    const { orgId, userWithRole } = await createOrgWithMembers(admin, ['owner']);
    for (const principal of [{ kind: 'user', userId: userWithRole('owner') }, { kind: 'worker', orgId }] as const) {
      for (const fn of ['private.ops_pending_approvals()', 'private.ops_crm_sync_lag()']) {
        expect(await attempt(pool, principal, `select * from ${fn}`), `${principal.kind} ${fn}`).toMatchObject({ errorCode: '42501' });
      }
    }
    expect((await pool.query('select private.ops_pending_approvals() as n')).rows[0].n).toMatch(/^\d+$/);
  });

  it('after API requests, agent runs (ok, rate-limited, rejected) and CRM requests', async () => {
    // API: a success, a 404 and a 5xx (readiness while draining answers 503).
    expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/v1/orgs/00000000-0000-4000-8000-000000000000/runs' })).statusCode).toBe(401);
    const draining = await buildApp({ pool, temporal: temporal.client, logger: testLogger, auth: { jwtSecret: TEST_JWT_SECRET }, lifecycle: { draining: true } });
    expect((await draining.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(503);
    await draining.close();

    // Worker: LLM calls that succeed, get rate-limited then succeed, and get rejected.
    const ctx = { temporal, admin, pool, llm, taskQueue };
    for (const name of ['completed', 'llm-429-retry', 'llm-rejected']) await scenarios.find((s) => s.path === name)!.run(ctx);

    // A workflow task failure (what non-determinism or a workflow bug looks like to the worker):
    // a workflow type the worker does not know.
    const unknown = await temporal.client.workflow.start('noSuchWorkflowType', { taskQueue, workflowId: `metrics-unknown-${taskQueue}`, args: [] });
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const { events } = await unknown.fetchHistory();
      if (events?.some((e) => e.workflowTaskFailedEventAttributes)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    await unknown.terminate('metrics test done');

    // CRM: a real sync against the fake Kommo (records synced, sync lag) …
    await crmScenarios.scenarios.find((s) => s.path === 'incremental')!.run({ temporal, admin, pool, llm, taskQueue: crmTaskQueue });
    // … and one request answered, one rate-limited, one unreachable.
    const crm = createServer((req, res) => {
      if (req.url === '/busy') res.writeHead(429, { 'retry-after': '1', 'content-type': 'application/json' }).end('{}');
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
    await new Promise<void>((resolve) => crm.listen(0, '127.0.0.1', resolve));
    const http = new CrmHttpClient({ provider: 'hubspot', baseUrl: `http://127.0.0.1:${(crm.address() as AddressInfo).port}`, timeoutMs: 2_000 });
    await http.request({ method: 'GET', path: '/ok' });
    await http.request({ method: 'GET', path: '/busy' }).catch(() => undefined);
    await new Promise<void>((resolve) => crm.close(() => resolve()));
    await http.request({ method: 'GET', path: '/gone' }).catch(() => undefined);

    const appExposition = await (await fetch(metrics.url)).text();
    // The SDK exporter flushes periodically; poll until the worker's series are there.
    let sdkExposition = '';
    for (let i = 0; i < 50 && !/temporal_workflow_task_execution_failed/.test(sdkExposition); i++) {
      sdkExposition = await (await fetch(sdkMetricsUrl)).text();
      await new Promise((r) => setTimeout(r, 200));
    }
    // Scrape-time database metrics (approvals, sync lag) collected without errors.
    expect(appExposition.split('\n').filter((l) => l.startsWith('gap_metrics_collect_errors_total'))).toEqual([]);
    const emitted = new Set([...sampledNames(appExposition), ...sampledNames(sdkExposition)]);
    // `up` is written by Prometheus itself for every scrape target.
    emitted.add('up');

    const references = [
      ...alertRules().map((r) => ({ where: `alert ${r.alert}`, expr: r.expr })),
      ...panelExpressions().map((p) => ({ where: `panel "${p.panel}"`, expr: p.expr })),
    ];
    const missing = references.flatMap(({ where, expr }) => metricNames(expr).filter((m) => !emitted.has(m)).map((m) => `${where}: ${m}`));
    expect(missing).toEqual([]);
    // And the references are not vacuous: each one names at least one metric.
    for (const { where, expr } of references) expect(metricNames(expr).length, where).toBeGreaterThan(0);

    // Spot checks of the label values the dashboard relies on.
    expect(appExposition).toMatch(/gap_http_request_duration_seconds_count\{method="GET",route="\/healthz",status_code="200"\} \d/);
    expect(appExposition).toMatch(/gap_http_server_errors_total\{method="GET",route="\/readyz",status_code="503"\} 1/);
    expect(appExposition).toMatch(/gap_llm_requests_total\{model="openai\/gpt-4o-mini",outcome="rate_limited"\} 1/);
    expect(appExposition).toMatch(/gap_llm_requests_total\{model="openai\/gpt-4o-mini",outcome="rejected"\} 1/);
    expect(appExposition).toMatch(/gap_llm_tokens_total\{model="openai\/gpt-4o-mini",direction="input"\} \d+/);
    expect(appExposition).toMatch(/gap_crm_requests_total\{provider="hubspot",status="429"\} 1/);
    expect(appExposition).toMatch(/gap_crm_requests_total\{provider="hubspot",status="network"\} 1/);
    expect(appExposition).toMatch(/gap_approvals_pending \d+/);
    expect(appExposition).toMatch(/gap_crm_records_synced_total\{provider="kommo",object_type="deals"\} \d+/);
    expect(appExposition).toMatch(/gap_crm_sync_lag_seconds\{provider="kommo"\} \d/);
    expect(sdkExposition).toMatch(/service="worker"/);
  });
});
