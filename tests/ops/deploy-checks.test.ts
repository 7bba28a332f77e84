/**
 * The two checks the release workflow trusts to decide a rollback and a switch:
 * scripts/deploy/watch.ts against a local server speaking Prometheus' alerts API, and
 * scripts/deploy/smoke.ts (the README's demo path) against the real API with a worker on the
 * test stack.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { smoke } from '../../scripts/deploy/smoke.js';
import { seedOrg, startFullTestApp, type FullTestApp, type SeededOrg } from '../support/full-app.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

async function run(script: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, script), ...args], { cwd: root, env: { PATH: process.env.PATH ?? '', ...env } });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { code, output };
}

/** Prometheus' GET /api/v1/alerts with the given alerts; records the Authorization it got. */
async function fakePrometheus(alerts: Array<{ alertname: string; state: string }>, status = 200) {
  const seen: Array<string | undefined> = [];
  const server = http.createServer((req, res) => {
    seen.push(req.headers.authorization);
    if (req.url !== '/api/v1/alerts') return res.writeHead(404).end();
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 'success', data: { alerts: alerts.map((a) => ({ labels: { alertname: a.alertname, severity: 'page' }, state: a.state, activeAt: '2026-12-06T00:00:00Z', value: '1' })) } }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

const watch = (url: string, seconds = 2) => ['--prometheus', url, '--seconds', String(seconds), '--interval', '1', '--alerts', 'GapApiServerErrors,GapApiSlow'];

describe('scripts/deploy/watch.ts', () => {
  it('passes when no watched alert fires (others firing, watched ones pending), sending the token', async () => {
    const prom = await fakePrometheus([
      { alertname: 'GapLlmSpendHigh', state: 'firing' },
      { alertname: 'GapApiSlow', state: 'pending' },
    ]);
    try {
      const { code, output } = await run('scripts/deploy/watch.ts', watch(prom.url), { PROMETHEUS_TOKEN: 'prom-token' });
      expect(code, output).toBe(0);
      expect(output).toContain('no watched alert fired');
      expect(prom.seen.length).toBeGreaterThanOrEqual(2);
      expect(prom.seen.every((h) => h === 'Bearer prom-token')).toBe(true);
    } finally {
      await prom.close();
    }
  });

  it('fails as soon as a watched alert fires', async () => {
    const prom = await fakePrometheus([{ alertname: 'GapApiServerErrors', state: 'firing' }]);
    try {
      const { code, output } = await run('scripts/deploy/watch.ts', watch(prom.url, 60));
      expect(code, output).toBe(1);
      expect(output).toMatch(/FIRING GapApiServerErrors/);
      expect(prom.seen).toHaveLength(1);
    } finally {
      await prom.close();
    }
  });

  it('fails when Prometheus cannot be read: a blind watch must not pass', async () => {
    const prom = await fakePrometheus([], 503);
    try {
      const { code, output } = await run('scripts/deploy/watch.ts', ['--prometheus', prom.url, '--seconds', '30', '--interval', '0.2', '--alerts', 'GapApiServerErrors']);
      expect(code, output).toBe(1);
      expect(output).toMatch(/unreachable \(3\/3\)/);
    } finally {
      await prom.close();
    }
  });
});

describe('scripts/deploy/smoke.ts against the test stack', () => {
  let full: FullTestApp;
  let org: SeededOrg;
  let url: string;
  beforeAll(async () => {
    full = await startFullTestApp({ agentWorker: true });
    org = await seedOrg(full, 'smoke');
    url = await full.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await full?.close();
  });

  it('starts a run with an org API key and follows it to completed', async () => {
    const lines: string[] = [];
    await smoke({ url, token: org.memberKey, orgId: org.orgId, agentId: org.ids.agentId, timeoutMs: 60_000, log: (l) => lines.push(l) });
    expect(lines[1]).toMatch(/^run [0-9a-f-]{36} completed$/);
    const runId = /^run (\S+) completed$/.exec(lines[1]!)![1]!;
    const { rows } = await full.admin.query<{ status: string }>(`select status from public.agent_runs where id = $1`, [runId]);
    expect(rows[0]!.status).toBe('completed');
  });

  it("fails with a clear message when the token cannot start runs in that org", async () => {
    const other = await seedOrg(full, 'smoke-other');
    await expect(smoke({ url, token: other.memberKey, orgId: org.orgId, agentId: org.ids.agentId, timeoutMs: 10_000, log: () => {} })).rejects.toThrow(/starting a run answered 40[134]/);
  });
});
