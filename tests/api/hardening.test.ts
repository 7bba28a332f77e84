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
      rateLimits: { perOrg: 3, perApiKey: 100, perUser: 8, perIp: 4, windowMs: 60_000 },
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
  const listRuns = (org: string, token: string) =>
    app.inject({ method: 'GET', url: `/v1/orgs/${org}/runs`, headers: { authorization: `Bearer ${token}` } });

  it("limits an organization's request rate with 429 and Retry-After, without touching other orgs", async () => {
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await listRuns(orgA, tokenA));

    expect(answers.slice(0, 3).map((r) => r.statusCode)).toEqual([200, 200, 200]);
    const limited = answers[3]!;
    expect(limited.statusCode).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(limited.json()).toMatchObject({ type: `${PROBLEM}rate-limited`, status: 429 });
    expect((await listRuns(orgB, tokenB)).statusCode).toBe(200);
  });

  it("charges a stranger's requests to the stranger, never to the org in the path", async () => {
    const org = await createOrgWithMembers(admin, ['owner']);
    const member = await signUserToken(org.userWithRole('owner'));
    const stranger = await signUserToken(randomUUID());

    // The stranger spends their own budget (8) on 404s, then is refused themselves.
    const probes = [];
    for (let i = 0; i < 10; i++) probes.push((await (i % 2 ? getRun(org.orgId, stranger) : listRuns(org.orgId, stranger))).statusCode);
    expect(probes.slice(0, 8)).toEqual(Array(8).fill(404));
    expect(probes.slice(8)).toEqual([429, 429]);

    // The org's own budget is untouched: its member gets all three of its requests.
    const served = [];
    for (let i = 0; i < 3; i++) served.push((await listRuns(org.orgId, member)).statusCode);
    expect(served).toEqual([200, 200, 200]);
    // Once it is spent, the member is refused, but a stranger still gets the 404 that reveals nothing.
    expect((await listRuns(org.orgId, member)).statusCode).toBe(429);
    const outsider = await signUserToken(randomUUID());
    expect((await listRuns(org.orgId, outsider)).statusCode).toBe(404);
  });

  it('keys budgets by the org, however its id is cased', async () => {
    const org = await createOrgWithMembers(admin, ['owner', 'member']);
    const owner = await signUserToken(org.userWithRole('owner'));
    const member = await signUserToken(org.userWithRole('member'));
    for (let i = 0; i < 3; i++) expect((await listRuns(org.orgId, owner)).statusCode).toBe(200);
    const upper = await listRuns(org.orgId.toUpperCase(), member);
    expect(upper.statusCode).toBe(429);
  });

  it("gives a user one budget across all their orgs", async () => {
    const userId = randomUUID();
    const orgs = [];
    for (let i = 0; i < 3; i++) orgs.push(await createOrgWithMembers(admin, ['owner']));
    await admin.query(`insert into public.organization_members (org_id, user_id, role) select unnest($1::uuid[]), $2, 'member'`, [orgs.map((o) => o.orgId), userId]);
    const token = await signUserToken(userId);
    const answers = [];
    // Three orgs with three requests each would stay inside every org's budget; the user's own (8) runs out.
    for (const org of orgs) for (let i = 0; i < 3; i++) answers.push((await listRuns(org.orgId, token)).statusCode);
    expect(answers.slice(0, 8)).toEqual(Array(8).fill(200));
    expect(answers[8]).toBe(429);
  });

  it('counts failed authentications against the client IP, not against anyone else', async () => {
    const org = await createOrgWithMembers(admin, ['owner']);
    const bad = [];
    for (let i = 0; i < 5; i++) {
      bad.push((await app.inject({ method: 'GET', url: `/v1/orgs/${org.orgId}/runs`, headers: { authorization: 'Bearer gap_not-a-real-key' }, remoteAddress: '203.0.113.9' })).statusCode);
    }
    expect(bad).toEqual([401, 401, 401, 401, 429]);
    // Another address, and the org itself, are unaffected.
    const member = await signUserToken(org.userWithRole('owner'));
    const fromElsewhere = await app.inject({ method: 'GET', url: `/v1/orgs/${org.orgId}/runs`, headers: { authorization: `Bearer ${member}` }, remoteAddress: '203.0.113.10' });
    expect(fromElsewhere.statusCode).toBe(200);
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
