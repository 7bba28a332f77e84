import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, waitForPort } from '../../scripts/stack/ports.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { adminPool, createAgent, createOrgWithMembers } from '../support/db.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

describe('API graceful shutdown', () => {
  let admin: pg.Pool;
  beforeAll(() => {
    admin = adminPool();
  });
  afterAll(async () => {
    await admin?.end();
  });

  it('fails readiness at once on SIGTERM, answers every request it accepted during a burst, and exits 0', async () => {
    const org = await createOrgWithMembers(admin, ['owner']);
    const agentId = await createAgent(admin, org.orgId);
    const token = await signUserToken(org.userWithRole('owner'));
    const port = await freePort();
    // `node --import tsx` rather than the tsx CLI: the CLI runs the app in a child process and
    // relays signals, which would put a second process between SIGTERM and the server.
    const api = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'api', 'main.ts')], {
      cwd: root,
      env: {
        ...process.env,
        APP_ENV: 'test',
        LOG_LEVEL: 'warn',
        DATABASE_URL: process.env.TEST_DATABASE_URL,
        TEMPORAL_ADDRESS: process.env.TEST_TEMPORAL_ADDRESS,
        TEMPORAL_NAMESPACE: process.env.TEST_TEMPORAL_NAMESPACE,
        SUPABASE_JWT_SECRET: TEST_JWT_SECRET,
        API_PORT: String(port),
        // Long enough for the balancer below to see readiness fail on a loaded machine.
        SHUTDOWN_DRAIN_DELAY_MS: '3000',
        RATE_LIMIT_PER_ORG_PER_MINUTE: '100000',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    api.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => api.on('exit', (code) => resolve(code)));
    await Promise.race([
      waitForPort('127.0.0.1', port, 30_000),
      exited.then((exitCode) => {
        throw new Error(`the API exited (${exitCode}) before listening:\n${stderr}`);
      }),
    ]);
    const base = `http://127.0.0.1:${port}`;

    // A load balancer in miniature: it routes requests while readiness is green and stops the
    // moment it turns red, which SIGTERM makes happen before the server stops accepting.
    let routing = true;
    let sawDraining = false;
    const balancer = (async () => {
      while (routing) {
        if (api.exitCode !== null || api.signalCode !== null) {
          routing = false;
          break;
        }
        const ready = await fetch(`${base}/readyz`).then((r) => r.status, () => 0);
        if (ready === 503) {
          sawDraining = true;
          routing = false;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();

    const outcomes: Array<{ status?: number; id?: string; error?: string }> = [];
    const client = async () => {
      while (routing) {
        try {
          const res = await fetch(`${base}/v1/orgs/${org.orgId}/agents/${agentId}/runs`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', connection: 'close' },
            body: JSON.stringify({ input: 'burst' }),
          });
          const body = (await res.json()) as { id?: string };
          outcomes.push({ status: res.status, ...(body.id ? { id: body.id } : {}) });
        } catch (err) {
          outcomes.push({ error: String((err as { cause?: { code?: string } }).cause?.code ?? err) });
        }
      }
    };
    const clients = Array.from({ length: 8 }, () => client());
    await new Promise((r) => setTimeout(r, 700));
    api.kill('SIGTERM');

    await Promise.all([balancer, ...clients]);
    const code = await exited;

    expect(sawDraining).toBe(true);
    expect(code, stderr).toBe(0);
    expect(outcomes.length).toBeGreaterThan(5);
    expect(outcomes.filter((o) => o.error)).toEqual([]);
    expect(new Set(outcomes.map((o) => o.status))).toEqual(new Set([201]));
    const ids = outcomes.map((o) => o.id!);
    const { rows } = await admin.query(`select count(*)::int as n from public.agent_runs where id = any($1::uuid[])`, [ids]);
    expect(rows[0].n).toBe(ids.length);
    // Starting the API child (tsx compiles it) is slow on a loaded 2-core machine.
  }, 180_000);
});
