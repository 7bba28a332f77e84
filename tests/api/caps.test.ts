import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { startFullTestApp } from '../support/full-app.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';
import { connectTestTemporal, testLogger, type TestTemporal } from '../support/temporal.js';

const PROBLEM = 'https://gpt-agent-platform.dev/problems/';

// Issue 12, item 6: how many of each thing a person or an org may hold is capped (configurable),
// and a create past a cap answers 409 limit-reached, even when the creates race.
describe('resource caps', () => {
  let temporal: TestTemporal;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let app: App;

  beforeAll(async () => {
    temporal = await connectTestTemporal();
    pool = appPool();
    admin = adminPool();
    app = await buildApp({
      pool,
      temporal: temporal.client,
      logger: testLogger,
      auth: { jwtSecret: TEST_JWT_SECRET },
      knowledgeTaskQueue: `caps-${randomUUID()}`,
      caps: { orgsPerUser: 2, agentsPerOrg: 3, knowledgeDocumentsPerOrg: 1, apiKeysPerOrg: 1, invitesPerOrg: 1 },
    });
  });

  afterAll(async () => {
    await app?.close();
    await temporal?.close();
    await pool?.end();
    await admin?.end();
  });

  const post = async (token: string, url: string, payload: Record<string, unknown>) => app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${token}` }, payload });
  const expectLimit = (res: Awaited<ReturnType<typeof post>>) => {
    expect(res.statusCode, res.body).toBe(409);
    expect(res.json().type).toBe(`${PROBLEM}limit-reached`);
  };

  it('caps the organizations one person owns', async () => {
    const token = await signUserToken(randomUUID());
    expect((await post(token, '/v1/orgs', { name: 'one' })).statusCode).toBe(201);
    expect((await post(token, '/v1/orgs', { name: 'two' })).statusCode).toBe(201);
    expectLimit(await post(token, '/v1/orgs', { name: 'three' }));
  });

  it('caps agents per org, also when creates race', async () => {
    const org = await createOrgWithMembers(admin, ['owner']);
    const token = await signUserToken(org.userWithRole('owner'));
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => post(token, `/v1/orgs/${org.orgId}/agents`, { name: `Agent ${i}`, model: 'test/model' })));
    expect(answers.filter((r) => r.statusCode === 201)).toHaveLength(3);
    for (const res of answers.filter((r) => r.statusCode !== 201)) expectLimit(res);
    const { rows } = await admin.query(`select count(*)::int as n from public.agents where org_id = $1`, [org.orgId]);
    expect(rows[0].n).toBe(3);
  });

  it('caps knowledge documents, unrevoked API keys and pending invites per org', async () => {
    const org = await createOrgWithMembers(admin, ['owner']);
    const token = await signUserToken(org.userWithRole('owner'));
    const base = `/v1/orgs/${org.orgId}`;
    expect((await post(token, `${base}/knowledge`, { title: 'one', body: 'text' })).statusCode).toBe(201);
    expectLimit(await post(token, `${base}/knowledge`, { title: 'two', body: 'text' }));

    const key = await post(token, `${base}/api-keys`, { name: 'one' });
    expect(key.statusCode).toBe(201);
    expectLimit(await post(token, `${base}/api-keys`, { name: 'two' }));
    // A revoked key no longer counts.
    expect((await app.inject({ method: 'DELETE', url: `${base}/api-keys/${key.json().id}`, headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(204);
    expect((await post(token, `${base}/api-keys`, { name: 'three' })).statusCode).toBe(201);

    expect((await post(token, `${base}/invites`, { email: `${randomUUID()}@example.test` })).statusCode).toBe(201);
    expectLimit(await post(token, `${base}/invites`, { email: `${randomUUID()}@example.test` }));
  });

  it('caps webhook endpoints per org (the full app: endpoints need the CRM keyring; loopback is its allowed host)', async () => {
    const full = await startFullTestApp({ caps: { webhookEndpointsPerOrg: 1 } });
    try {
      const org = await createOrgWithMembers(full.admin, ['owner']);
      const token = await signUserToken(org.userWithRole('owner'));
      const create = () => full.app.inject({ method: 'POST', url: `/v1/orgs/${org.orgId}/webhook-endpoints`, headers: { authorization: `Bearer ${token}` }, payload: { url: 'https://127.0.0.1/gap' } });
      const first = await create();
      expect(first.statusCode, first.body).toBe(201);
      expectLimit(await create());
      // A deleted endpoint no longer counts.
      const del = await full.app.inject({ method: 'DELETE', url: `/v1/orgs/${org.orgId}/webhook-endpoints/${first.json().id}`, headers: { authorization: `Bearer ${token}` } });
      expect(del.statusCode).toBe(204);
      expect((await create()).statusCode).toBe(201);
    } finally {
      await full.close();
    }
  });
});
