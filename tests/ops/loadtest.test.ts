/**
 * `npm run loadtest` at a small scale: against the real API on the test stack (real Postgres,
 * real Temporal) it passes and reports every route; against a server that answers a 5xx or
 * serves another org's run it fails. The CLI runs as its own process, as CI runs it.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_JWT_SECRET } from '../support/auth.js';
import { startFullTestApp, type FullTestApp } from '../support/full-app.js';
import { startMisbehavingApi } from '../support/misbehaving-api.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

interface RouteJson {
  route: string;
  requests: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  statuses: Record<string, number>;
  unexpected: number;
  noAnswer: number;
  crossOrg: number;
}

async function loadtest(args: string[]): Promise<{ code: number | null; output: string; report?: { ok: boolean; reasons: string[]; routes: RouteJson[]; skipped: unknown[] } }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'loadtest-'));
  const json = path.join(dir, 'report.json');
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'scripts/loadtest/main.ts'), ...args, '--json', json], {
    cwd: root,
    // Nothing from the caller's environment may steer the run.
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  let report;
  try {
    report = JSON.parse(await readFile(json, 'utf8'));
  } catch {
    report = undefined;
  }
  return { code, output, report };
}

const small = ['--jwt-secret', TEST_JWT_SECRET, '--orgs', '3', '--users', '2', '--duration', '8', '--rate', '24'];

describe('npm run loadtest against the test stack', () => {
  let full: FullTestApp;
  let url: string;
  beforeAll(async () => {
    full = await startFullTestApp();
    url = await full.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await full?.close();
  });

  it('passes, and reports throughput and p50/p95/p99 for every route, webhooks included', async () => {
    const { code, output, report } = await loadtest(['--url', url, ...small, '--webhooks', 'on', '--kommo-account-url', full.kommo.url]);
    expect(code, output).toBe(0);
    expect(output).toMatch(/p50 ms\s+p95 ms\s+p99 ms/);
    expect(output).toContain('PASS');
    const routes = report!.routes;
    expect(routes.map((r) => r.route)).toEqual([
      'POST /v1/orgs/:orgId/agents/:agentId/runs',
      'GET /v1/orgs/:orgId/runs/:runId',
      'GET /v1/orgs/:orgId/runs',
      'GET /v1/orgs/:orgId/runs/:runId/events (SSE)',
      'POST /v1/webhooks/crm/kommo/:connectionId',
      "another org's run ids (must answer 404)",
    ]);
    for (const r of routes) {
      expect(r.requests, r.route).toBeGreaterThan(0);
      expect(r.p99Ms, r.route).toBeGreaterThanOrEqual(r.p50Ms);
      expect(r.crossOrg + r.unexpected + r.noAnswer, r.route).toBe(0);
    }
    // Every probe of another org's run answered 404, and the starts really started runs.
    const probes = routes.find((r) => r.route.startsWith('another org'))!;
    expect(Object.keys(probes.statuses)).toEqual(['404']);
    const started = routes.find((r) => r.route.startsWith('POST /v1/orgs'))!;
    const { rows } = await full.admin.query<{ n: string }>(`select count(*) as n from public.agent_runs where input like 'load test run for %'`);
    // The orgs are deleted at the end with everything they own.
    expect(Number(rows[0]!.n)).toBe(0);
    expect(started.statuses['201']).toBeGreaterThan(0);
    const { rows: left } = await full.admin.query(`select id from public.organizations where name like 'loadtest-%'`);
    expect(left).toEqual([]);
  });
});

describe('npm run loadtest against a misbehaving server', () => {
  it('exits non-zero when a route answers 5xx', async () => {
    const api = await startMisbehavingApi('server-error');
    try {
      const { code, output, report } = await loadtest(['--url', api.url, ...small]);
      expect(code, output).toBe(1);
      expect(report!.ok).toBe(false);
      expect(report!.reasons.join('\n')).toMatch(/GET \/v1\/orgs\/:orgId\/runs\/:runId: \d+ answer\(s\) with a 5xx status/);
      expect(output).toContain('FAIL');
      // Webhooks are skipped, and said so, on a server without CRM.
      expect(output).toMatch(/skipped POST \/v1\/webhooks\/crm\/kommo\/:connectionId: the server has no CRM routes/);
    } finally {
      await api.close();
    }
  });

  it("exits non-zero when another org's run is served", async () => {
    const api = await startMisbehavingApi('cross-org');
    try {
      const { code, output, report } = await loadtest(['--url', api.url, ...small]);
      expect(code, output).toBe(1);
      expect(report!.reasons.join('\n')).toMatch(/another org's run ids \(must answer 404\): \d+ answer\(s\) exposed another org's run/);
      // No 5xx here: the failure is the leak alone.
      expect(report!.reasons.join('\n')).not.toMatch(/5xx/);
    } finally {
      await api.close();
    }
  });
});
