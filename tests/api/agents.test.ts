import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';
import { connectTestTemporal, testLogger, type TestTemporal } from '../support/temporal.js';

const PROBLEM = 'https://gpt-agent-platform.dev/problems/';

describe('agents API: configuration CRUD', () => {
  let temporal: TestTemporal;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let app: App;
  let orgA: string;
  let adminToken: string;
  let memberToken: string;
  let outsiderToken: string;

  beforeAll(async () => {
    temporal = await connectTestTemporal();
    pool = appPool();
    admin = adminPool();
    app = await buildApp({ pool, temporal: temporal.client, logger: testLogger, auth: { jwtSecret: TEST_JWT_SECRET } });
    const a = await createOrgWithMembers(admin, ['owner', 'admin', 'member']);
    orgA = a.orgId;
    adminToken = await signUserToken(a.userWithRole('admin'));
    memberToken = await signUserToken(a.userWithRole('member'));
    const b = await createOrgWithMembers(admin, ['owner']);
    outsiderToken = await signUserToken(b.userWithRole('owner'));
  });

  afterAll(async () => {
    await app?.close();
    await temporal?.close();
    await pool?.end();
    await admin?.end();
  });

  const call = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, token: string, payload?: unknown) =>
    app.inject({
      method,
      url: `/v1/orgs/${orgA}${path}`,
      headers: { authorization: `Bearer ${token}` },
      ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
    });

  const fullConfig = {
    name: 'Lead qualifier',
    model: 'test/model',
    instructions: 'Qualify leads.',
    temperature: 0.2,
    maxOutputTokens: 500,
    maxSteps: 6,
    allowedTools: ['knowledge_search', 'schedule_follow_up'],
    approvalTools: ['schedule_follow_up'],
    runTokenBudget: 20_000,
    busyPolicy: 'reject',
    approvalTimeoutSeconds: 3600,
  };

  it('an admin creates an agent with its whole configuration, and members read it back', async () => {
    const created = await call('POST', '/agents', adminToken, fullConfig);
    expect(created.statusCode).toBe(201);
    const agent = created.json();
    expect(agent).toMatchObject({ ...fullConfig, orgId: orgA, id: expect.any(String) });
    expect(created.headers.location).toBe(`/v1/orgs/${orgA}/agents/${agent.id}`);

    const read = await call('GET', `/agents/${agent.id}`, memberToken);
    expect(read.statusCode).toBe(200);
    expect(read.json()).toEqual(agent);
  });

  it('applies defaults for everything but name and model', async () => {
    const created = await call('POST', '/agents', adminToken, { name: 'Minimal', model: 'test/model' });
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({
      instructions: '',
      temperature: 0.7,
      maxOutputTokens: 1024,
      maxSteps: 10,
      allowedTools: [],
      approvalTools: [],
      runTokenBudget: null,
      busyPolicy: 'queue',
      approvalTimeoutSeconds: 86400,
    });
  });

  it('an admin changes part of an agent with PATCH and deletes it', async () => {
    const agent = (await call('POST', '/agents', adminToken, fullConfig)).json();
    const patched = await call('PATCH', `/agents/${agent.id}`, adminToken, { maxSteps: 3, runTokenBudget: null, approvalTools: [] });
    expect(patched.statusCode).toBe(200);
    expect(patched.json()).toMatchObject({ maxSteps: 3, runTokenBudget: null, approvalTools: [], name: 'Lead qualifier' });

    expect((await call('DELETE', `/agents/${agent.id}`, adminToken)).statusCode).toBe(204);
    expect((await call('GET', `/agents/${agent.id}`, adminToken)).statusCode).toBe(404);
    expect((await call('DELETE', `/agents/${agent.id}`, adminToken)).statusCode).toBe(404);
  });

  it('lists agents newest first with cursor paging and a capped page size', async () => {
    const org = await createOrgWithMembers(admin, ['admin']);
    const token = await signUserToken(org.userWithRole('admin'));
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await app.inject({
        method: 'POST',
        url: `/v1/orgs/${org.orgId}/agents`,
        headers: { authorization: `Bearer ${token}` },
        payload: { name: `Agent ${i}`, model: 'm' },
      });
      ids.push(res.json().id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res: Awaited<ReturnType<App['inject']>> = await app.inject({
        method: 'GET',
        url: `/v1/orgs/${org.orgId}/agents?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.statusCode).toBe(200);
      const page = res.json() as { items: { id: string }[]; nextCursor: string | null };
      expect(page.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.items.map((a) => a.id));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());

    const huge = await app.inject({ method: 'GET', url: `/v1/orgs/${org.orgId}/agents?limit=100000`, headers: { authorization: `Bearer ${token}` } });
    expect(huge.statusCode).toBe(200);
    const bad = await app.inject({ method: 'GET', url: `/v1/orgs/${org.orgId}/agents?cursor=garbage`, headers: { authorization: `Bearer ${token}` } });
    expect(bad.statusCode).toBe(400);
  });

  it('answers 403 to a member who tries to write, and changes nothing', async () => {
    const agent = (await call('POST', '/agents', adminToken, fullConfig)).json();
    for (const res of [
      await call('POST', '/agents', memberToken, fullConfig),
      await call('PATCH', `/agents/${agent.id}`, memberToken, { name: 'Mine now' }),
      await call('DELETE', `/agents/${agent.id}`, memberToken),
    ]) {
      expect(res.statusCode).toBe(403);
      expect(res.json().type).toBe(`${PROBLEM}forbidden`);
    }
    expect((await call('GET', `/agents/${agent.id}`, memberToken)).json().name).toBe('Lead qualifier');
  });

  it('answers 404 to a user of another organization, for reads and writes alike', async () => {
    const agent = (await call('POST', '/agents', adminToken, fullConfig)).json();
    for (const res of [
      await call('GET', `/agents/${agent.id}`, outsiderToken),
      await call('GET', '/agents', outsiderToken),
      await call('POST', '/agents', outsiderToken, fullConfig),
      await call('PATCH', `/agents/${agent.id}`, outsiderToken, { name: 'x' }),
      await call('DELETE', `/agents/${agent.id}`, outsiderToken),
    ]) {
      expect(res.statusCode).toBe(404);
      expect(res.body).not.toContain('Lead qualifier');
    }
    const { rows } = await admin.query(`select count(*)::int as n from public.agents where id = $1`, [agent.id]);
    expect(rows[0].n).toBe(1);
  });

  it('validates the configuration and rejects unknown or server-owned fields', async () => {
    const cases: unknown[] = [
      { ...fullConfig, temperature: 3 },
      { ...fullConfig, maxSteps: 0 },
      { ...fullConfig, busyPolicy: 'drop' },
      { ...fullConfig, allowedTools: ['Not A Tool'] },
      { ...fullConfig, approvalTools: ['crm_add_note'] },
      { ...fullConfig, orgId: randomUUID() },
      { ...fullConfig, id: randomUUID() },
      { model: 'm' },
    ];
    for (const body of cases) {
      const res = await call('POST', '/agents', adminToken, body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.json().type).toBe(`${PROBLEM}validation-error`);
    }
    const agent = (await call('POST', '/agents', adminToken, fullConfig)).json();
    const res = await call('PATCH', `/agents/${agent.id}`, adminToken, { allowedTools: ['knowledge_search'] });
    expect(res.statusCode).toBe(400);
  });
});
