import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';
import { connectTestTemporal, testLogger, type TestTemporal } from '../support/temporal.js';

const PROBLEM = 'https://gpt-agent-platform.dev/problems/';

describe('API limits and headers', () => {
  let app: App;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let temporal: TestTemporal;
  let orgA: string;
  let orgB: string;
  let tokenA: string;
  let tokenB: string;

  beforeAll(async () => {
    pool = appPool();
    admin = adminPool();
    temporal = await connectTestTemporal();
    app = await buildApp({
      pool,
      temporal: temporal.client,
      logger: testLogger,
      auth: { jwtSecret: TEST_JWT_SECRET },
      corsAllowedOrigins: ['https://app.example.com'],
      bodyLimitBytes: 64 * 1024,
      rateLimits: { perOrg: 3, perApiKey: 100, perUser: 100, windowMs: 60_000 },
    });
    const a = await createOrgWithMembers(admin, ['owner']);
    const b = await createOrgWithMembers(admin, ['owner']);
    orgA = a.orgId;
    orgB = b.orgId;
    tokenA = await signUserToken(a.userWithRole('owner'));
    tokenB = await signUserToken(b.userWithRole('owner'));
  });

  afterAll(async () => {
    await app?.close();
    await temporal?.close();
    await pool?.end();
    await admin?.end();
  });

  const getRun = (org: string, token: string) =>
    app.inject({ method: 'GET', url: `/v1/orgs/${org}/runs/${randomUUID()}`, headers: { authorization: `Bearer ${token}` } });

  it("limits an organization's request rate with 429 and Retry-After, without touching other orgs", async () => {
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await getRun(orgA, tokenA));

    expect(answers.slice(0, 3).map((r) => r.statusCode)).toEqual([404, 404, 404]);
    const limited = answers[3]!;
    expect(limited.statusCode).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(limited.json()).toMatchObject({ type: `${PROBLEM}rate-limited`, status: 429 });
    expect((await getRun(orgB, tokenB)).statusCode).toBe(404);
  });

  it('answers 413 for a body over the limit, and rejects prototype poisoning', async () => {
    const huge = await app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgB}/agents/${randomUUID()}/runs`,
      headers: { authorization: `Bearer ${tokenB}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ input: 'x'.repeat(70 * 1024) }),
    });
    expect(huge.statusCode).toBe(413);
    expect(huge.json().type).toBe(`${PROBLEM}payload-too-large`);

    const poisoned = await app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgB}/agents/${randomUUID()}/runs`,
      headers: { authorization: `Bearer ${tokenB}`, 'content-type': 'application/json' },
      payload: '{"input":"hi","__proto__":{"admin":true}}',
    });
    expect(poisoned.statusCode).toBe(400);
    expect(poisoned.headers['content-type']).toContain('application/problem+json');
  });

  it('allows CORS only for configured origins', async () => {
    const preflight = (origin: string) =>
      app.inject({
        method: 'OPTIONS',
        url: `/v1/orgs/${orgB}/runs/${randomUUID()}`,
        headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
      });
    const allowed = await preflight('https://app.example.com');
    expect(allowed.headers['access-control-allow-origin']).toBe('https://app.example.com');
    const evil = await preflight('https://evil.example.net');
    expect(evil.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('sets security headers and a request id on every answer', async () => {
    const res = await app.inject({ method: 'GET', url: '/healthz' });
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['strict-transport-security']).toBeDefined();
    expect(res.headers['x-request-id']).toMatch(/[0-9a-f-]{36}/);
    expect(res.headers['x-powered-by']).toBeUndefined();
  });
});
