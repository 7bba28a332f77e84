import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withServiceRole } from '../../lib/db.js';
import { createOrgWithMembers } from '../support/db.js';
import { signUserToken } from '../support/auth.js';
import { fillPath, pathParams, seedOrg, startFullTestApp, type FullTestApp, type InventoryRoute, type SeededOrg } from '../support/full-app.js';

/**
 * OWASP API Top 10 sweeps, driven by api/route-inventory.json: a route added to the inventory
 * is swept without touching this file (a write route must also get a valid body below).
 */
const inventory = (JSON.parse(readFileSync(new URL('../../api/route-inventory.json', import.meta.url), 'utf8')) as { routes: InventoryRoute[] }).routes;
const bearer = inventory.filter((r) => r.auth === 'bearer');
const key = (r: InventoryRoute) => `${r.method} ${r.path}`;
const PROBLEMS = 'https://gpt-agent-platform.dev/problems/';

/** A body each write route accepts, so a sweep reaches the authorization check behind validation. */
const validBodies: Record<string, (o: SeededOrg) => Record<string, unknown> | undefined> = {
  'POST /v1/orgs': () => ({ name: 'Swept org' }),
  'PATCH /v1/orgs/:orgId': () => ({ name: 'Renamed by sweep' }),
  'PATCH /v1/orgs/:orgId/members/:userId': () => ({ role: 'member' }),
  'DELETE /v1/orgs/:orgId/members/:userId': () => undefined,
  'POST /v1/orgs/:orgId/invites': () => ({ email: `sweep-${randomUUID().slice(0, 8)}@example.test` }),
  'POST /v1/invites/accept': (o) => ({ token: o.inviteToken }),
  'POST /v1/orgs/:orgId/api-keys': () => ({ name: 'Sweep key' }),
  'POST /v1/orgs/:orgId/agents': () => ({ name: 'Sweep agent', model: 'test/model' }),
  'PATCH /v1/orgs/:orgId/agents/:agentId': () => ({ name: 'Renamed agent' }),
  'PUT /v1/orgs/:orgId/quota': () => ({ dailyTokenQuota: 500_000 }),
  'POST /v1/orgs/:orgId/agents/:agentId/runs': () => ({ input: 'hello' }),
  'POST /v1/orgs/:orgId/agents/:agentId/conversations/:threadKey/messages': () => ({ content: 'hello' }),
  'POST /v1/orgs/:orgId/runs/:runId/cancel': () => undefined,
  'POST /v1/orgs/:orgId/runs/:runId/follow-up/resume': () => undefined,
  'POST /v1/orgs/:orgId/runs/:runId/handoff/resume': () => undefined,
  'POST /v1/orgs/:orgId/runs/:runId/approvals/:approvalId': () => ({ decision: 'reject' }),
  'POST /v1/orgs/:orgId/knowledge': () => ({ title: 'Sweep doc', body: 'text' }),
  'PATCH /v1/orgs/:orgId/knowledge/:documentId': () => ({ title: 'Renamed doc' }),
  'PUT /v1/orgs/:orgId/knowledge/:documentId': () => ({ title: 'Replaced doc', body: 'new text' }),
  'POST /v1/orgs/:orgId/crm/connections': () => ({ provider: 'hubspot', name: 'Sweep CRM', auth: { kind: 'token', token: 'pat-na1-sweep-0000000000' } }),
  'PATCH /v1/orgs/:orgId/crm/connections/:connectionId': () => ({ name: 'Renamed CRM' }),
  'POST /v1/orgs/:orgId/crm/connections/:connectionId/test': () => undefined,
  'PUT /v1/orgs/:orgId/crm/connections/:connectionId/schedule': () => ({ intervalSeconds: 3600, paused: true }),
  'POST /v1/orgs/:orgId/crm/connections/:connectionId/syncs': () => ({ mode: 'incremental' }),
  'POST /v1/orgs/:orgId/webhook-endpoints': () => ({ url: 'https://93.184.215.14/sweep', eventTypes: ['run.failed'] }),
  'PUT /v1/orgs/:orgId/llm-provider': () => ({ baseUrl: 'https://93.184.215.14/v1', apiKey: `sk-sweep-${randomUUID()}`, defaultModel: 'sweep/model' }),
  'PUT /v1/orgs/:orgId/crm/connections/:connectionId/messaging-settings': () => ({ quotaWarnPercent: 90 }),
};
/** Required query strings of routes that have them. */
const requiredQuery: Record<string, string> = {
  'GET /v1/orgs/:orgId/usage': 'from=2026-01-01&to=2026-01-31',
  'GET /v1/orgs/:orgId/crm/records': 'type=deals',
};
const isWrite = (r: InventoryRoute) => r.method === 'POST' || r.method === 'PUT' || r.method === 'PATCH';

describe('OWASP API sweeps over every route of the inventory', () => {
  let full: FullTestApp;
  let a: SeededOrg;
  let b: SeededOrg;
  let spec: { paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown> } }> }; parameters?: Array<{ in: string; name: string }> }>> };

  beforeAll(async () => {
    // No agent worker polls here: a message reaching its conversation waits this long, then 503.
    full = await startFullTestApp({ updateDeadlineMs: 1_000 });
    [a, b] = await Promise.all([seedOrg(full, 'a'), seedOrg(full, 'b')]);
    // A's own LLM provider (seeded here, not in seedOrg, whose runs elsewhere must reach the fake
    // model): its URL and key must never reach B.
    const llmKey = `sk-seed-${randomUUID()}`;
    const llmPath = `/llm/${randomUUID()}`;
    const provider = await full.app.inject({
      method: 'PUT',
      url: `/v1/orgs/${a.orgId}/llm-provider`,
      headers: { authorization: `Bearer ${a.adminToken}` },
      payload: { baseUrl: `https://93.184.215.14${llmPath}`, apiKey: llmKey, defaultModel: 'seeded/model' },
    });
    if (provider.statusCode !== 200) throw new Error(`seeding A's LLM provider failed: ${provider.body}`);
    a.secrets.push(llmKey, llmPath);
    spec = (await full.app.inject({ method: 'GET', url: '/openapi.json' })).json();
  });
  afterAll(async () => {
    await full?.close();
  });

  const call = (route: InventoryRoute, token: string, params: Record<string, string>, opts: { body?: unknown; query?: string } = {}) => {
    const url = fillPath(route.path, params) + (opts.query ? `?${opts.query}` : requiredQuery[key(route)] ? `?${requiredQuery[key(route)]}` : '');
    return full.app.inject({
      method: route.method,
      url,
      headers: { authorization: `Bearer ${token}` },
      ...(opts.body !== undefined ? { payload: opts.body as Record<string, unknown> } : {}),
    });
  };
  const paramsOf = (org: SeededOrg, orgId = org.orgId) => ({ ...org.ids, orgId });
  const bodyFor = (route: InventoryRoute, org: SeededOrg) => {
    if (!isWrite(route) && route.method !== 'DELETE') return undefined;
    const make = validBodies[key(route)];
    if (!make && isWrite(route)) throw new Error(`${key(route)}: add a valid body to validBodies in tests/api/sweeps.test.ts`);
    return make?.(org);
  };
  /** A's names, secrets and ids, minus the ids the caller itself put in the URL. */
  const leaksOfA = (body: string, url: string) => {
    const ids = [a.orgId, ...Object.values(a.ids), a.ownerId, a.adminId, a.memberId].filter((id) => id.length > 8 && !url.includes(id));
    return [...a.secrets, ...ids].filter((s) => body.includes(s));
  };

  it('has a valid body for every write route', () => {
    for (const route of bearer.filter(isWrite)) expect(validBodies[key(route)], key(route)).toBeDefined();
  });

  it('BOLA: a user of org B gets 404 for every route with an org A id, with A\'s or B\'s org in the path, and learns nothing', async () => {
    for (const route of bearer.filter((r) => r.path.includes(':orgId'))) {
      const variants = [paramsOf(a)];
      if (pathParams(route.path).some((p) => p !== 'orgId' && p !== 'threadKey')) variants.push(paramsOf(a, b.orgId));
      for (const params of variants) {
        const res = await call(route, b.owner, params, { body: bodyFor(route, b) });
        const where = `${key(route)} (org in path: ${params.orgId === a.orgId ? 'A' : 'B'})`;
        expect(res.statusCode, `${where}: ${res.body}`).toBe(404);
        expect(res.json().type, where).toBe(`${PROBLEMS}not-found`);
        expect(leaksOfA(res.body, fillPath(route.path, params)), where).toEqual([]);
      }
    }
  });

  it("BOLA: B's own lists, and routes without an org, show none of A's data", async () => {
    for (const route of bearer.filter((r) => r.method === 'GET' && !r.stream && pathParams(r.path).every((p) => p === 'orgId'))) {
      const res = await call(route, b.owner, { orgId: b.orgId });
      expect(res.statusCode, `${key(route)}: ${res.body}`).toBe(200);
      expect(leaksOfA(res.body, ''), key(route)).toEqual([]);
    }
    // A's invite token in B's hands reads as an unknown invite.
    const accept = await full.app.inject({ method: 'POST', url: '/v1/invites/accept', headers: { authorization: `Bearer ${b.owner}` }, payload: { token: a.inviteToken } });
    expect(accept.statusCode).toBe(404);
    expect(leaksOfA(accept.body, '')).toEqual([]);
    // A's API key cannot be pointed at B's org.
    const crossKey = await full.app.inject({ method: 'GET', url: `/v1/orgs/${b.orgId}/agents`, headers: { authorization: `Bearer ${a.memberKey}` } });
    expect(crossKey.statusCode).toBe(401);
  });

  it('BFLA: a member (user or member-scope API key) gets 403 on every admin route, and an admin on every owner route', async () => {
    const checked: string[] = [];
    for (const route of bearer.filter((r) => r.minRole === 'admin' || r.minRole === 'owner')) {
      const callers = [['member user', a.memberToken], ['member API key', a.memberKey]];
      if (route.minRole === 'owner') callers.push(['admin user', a.adminToken]);
      for (const [who, token] of callers) {
        const res = await call(route, token!, paramsOf(a), { body: bodyFor(route, a) });
        expect(res.statusCode, `${key(route)} as ${who}: ${res.body}`).toBe(403);
        expect(res.json().type).toBe(`${PROBLEMS}forbidden`);
      }
      checked.push(key(route));
    }
    expect(checked.length).toBeGreaterThan(15);
  });

  it('every bearer route\'s service enforces exactly its declared minRole: one role below is refused, the minimum (or, without one, any signed-in user) is let through', async () => {
    // An org of its own: the calls at the minimum change, and finally delete, what they reach.
    const c = await seedOrg(full, 'c');
    const roleRoutes = bearer.filter((r) => r.minRole !== null);
    expect(roleRoutes.length).toBeGreaterThan(50);
    // Below member is a signed-in user of another org (404: the org is not revealed); below
    // admin a member, below owner an admin (403).
    const below = { member: ['non-member user', b.owner, 404, 'not-found'], admin: ['member user', c.memberToken, 403, 'forbidden'], owner: ['admin user', c.adminToken, 403, 'forbidden'] } as const;
    const atMinimum = { member: c.memberToken, admin: c.adminToken, owner: c.owner } as const;
    // Below the minimum, member changes aim at the admin (a member may leave, so not at
    // themselves); at the minimum at the plain member, so the admin keeps the role later calls need.
    const belowParams = paramsOf(c);
    const atParams = { ...paramsOf(c), userId: c.memberId };

    /** Event streams answer once their head is written; the stream is then dropped. */
    const callOnce = async (route: InventoryRoute, token: string, params: Record<string, string>) => {
      if (!route.stream) return call(route, token, params, { body: bodyFor(route, c) });
      const res = await full.app.inject({ method: route.method, url: fillPath(route.path, params), headers: { authorization: `Bearer ${token}` }, payloadAsStream: true });
      const status = res.statusCode;
      const body = status === 200 ? '' : await new Response(res.stream() as unknown as ReadableStream).text();
      res.raw.res.destroy();
      return { statusCode: status, body, json: () => JSON.parse(body) as { type: string } };
    };

    for (const route of roleRoutes) {
      const [who, token, status, type] = below[route.minRole!];
      const res = await callOnce(route, token, belowParams);
      expect(res.statusCode, `${key(route)} (minRole ${route.minRole}) as ${who}: ${res.body}`).toBe(status);
      expect(res.json().type, key(route)).toBe(`${PROBLEMS}${type}`);
    }

    // Routes that declare no role take any signed-in user: one who belongs to no org yet.
    const email = `newcomer-${randomUUID().slice(0, 8)}@example.test`;
    const invite = await full.app.inject({ method: 'POST', url: `/v1/orgs/${c.orgId}/invites`, headers: { authorization: `Bearer ${c.adminToken}` }, payload: { email } });
    expect(invite.statusCode, invite.body).toBe(201);
    const newcomer = await signUserToken(randomUUID(), { email });
    const signedInRoutes = bearer.filter((r) => r.minRole === null);
    expect(signedInRoutes.length).toBeGreaterThanOrEqual(3);
    for (const route of signedInRoutes) {
      const body = key(route) === 'POST /v1/invites/accept' ? { token: invite.json().token } : bodyFor(route, c);
      const res = await call(route, newcomer, {}, { body });
      expect(res.statusCode, `${key(route)} as a user of no org: ${res.body}`).toBeLessThan(300);
    }

    // Deletions last, deepest paths first (deleting an agent deletes its runs) and the org's
    // own deletion last of all, so each call finds what it names.
    const rank = (r: InventoryRoute) => (r.method !== 'DELETE' ? 0 : 100 - r.path.split('/').length);
    const allowed: Record<string, number> = {};
    for (const route of [...roleRoutes].sort((x, y) => rank(x) - rank(y))) {
      const res = await callOnce(route, atMinimum[route.minRole!], atParams);
      const where = `${key(route)} (minRole ${route.minRole}) as ${route.minRole}: ${res.statusCode} ${res.body.slice(0, 300)}`;
      expect(res.statusCode, where).not.toBe(403);
      expect(res.statusCode, where).not.toBe(401);
      // The org and every id in the path exist, so a 404 would mean the service hid the org.
      expect(res.statusCode, where).not.toBe(404);
      // 503: let through, then no agent worker took the message in time (none runs here).
      if (res.statusCode >= 500) expect(res.json().type, where).toBe(`${PROBLEMS}service-unavailable`);
      allowed[key(route)] = res.statusCode;
    }
    expect(Object.values(allowed).filter((s) => s < 300).length, JSON.stringify(allowed)).toBeGreaterThan(roleRoutes.length * 0.8);
  });

  const PRIVILEGED = ['org_id', 'orgId', 'role', 'id', 'created_by', 'createdBy', 'owner', 'isAdmin', 'scope', 'status', 'key_hash', 'keyHash', 'token_hash', 'secret', 'token', 'webhook_secret_hash', 'api_base_url', 'apiBaseUrl', 'accessToken', 'unknownField'];

  async function snapshotOf(orgId: string, ownerId: string): Promise<Record<string, string>> {
    const { rows: tables } = await full.admin.query<{ table_name: string }>(
      `select table_name from information_schema.columns where table_schema = 'public' and column_name = 'org_id' order by table_name`,
    );
    const snapshot: Record<string, string> = {};
    for (const { table_name } of tables) {
      const { rows } = await full.admin.query<{ h: string }>(`select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) as h from public.${table_name} t where org_id = $1`, [orgId]);
      snapshot[table_name] = rows[0]!.h;
    }
    // Orgs the caller belongs to, not all orgs: other test files create orgs concurrently.
    const { rows } = await full.admin.query<{ h: string; n: number }>(
      `select md5(o::text) as h, (select count(*)::int from public.organization_members m where m.user_id = $2) as n from public.organizations o where id = $1`,
      [orgId, ownerId],
    );
    snapshot.organization = rows[0]!.h;
    snapshot.callersOrganizationCount = String(rows[0]!.n);
    return snapshot;
  }

  it('mass assignment: privileged or unknown fields on every write route answer 400 and change no row', async () => {
    const before = await snapshotOf(a.orgId, a.ownerId);
    let attempts = 0;
    for (const route of bearer.filter(isWrite)) {
      const op = spec.paths[route.path.replace(/:([A-Za-z]+)/g, '{$1}')]![route.method.toLowerCase()]!;
      const schema = op.requestBody?.content['application/json']?.schema;
      if (!schema) continue;
      const declared = new Set(Object.keys(schema.properties ?? {}));
      for (const field of PRIVILEGED.filter((f) => !declared.has(f))) {
        const body = { ...(validBodies[key(route)]!(a) ?? {}), [field]: field.endsWith('Id') || field.endsWith('_id') || field === 'id' || field === 'createdBy' || field === 'created_by' ? b.orgId : 'owner' };
        const res = await call(route, a.owner, paramsOf(a), { body });
        expect(res.statusCode, `${key(route)} + ${field}: ${res.body}`).toBe(400);
        expect(res.json()).toMatchObject({ type: `${PROBLEMS}validation-error` });
        attempts++;
      }
    }
    expect(attempts).toBeGreaterThan(200);
    expect(await snapshotOf(a.orgId, a.ownerId)).toEqual(before);
  });

  it('resource consumption: a huge limit is capped on every list route, a bad one is refused', async () => {
    const lists = bearer.filter((r) => r.method === 'GET' && spec.paths[r.path.replace(/:([A-Za-z]+)/g, '{$1}')]!.get!.parameters?.some((p) => p.in === 'query' && p.name === 'limit'));
    expect(lists.length).toBeGreaterThanOrEqual(10);
    for (const route of lists) {
      const extra = requiredQuery[key(route)] ? `&${requiredQuery[key(route)]}` : '';
      const huge = await call(route, a.owner, paramsOf(a), { query: `limit=100000000${extra}` });
      expect(huge.statusCode, `${key(route)}: ${huge.body}`).toBe(200);
      expect(huge.json().items.length).toBeLessThanOrEqual(100);
      for (const bad of ['0', '-1', 'abc', '1e400', '2.5']) {
        const res = await call(route, a.owner, paramsOf(a), { query: `limit=${bad}${extra}` });
        expect(res.statusCode, `${key(route)} limit=${bad}`).toBe(400);
      }
    }
    // The cap itself, observed on an org with more rows than a page holds.
    const c = await createOrgWithMembers(full.admin, ['owner']);
    await withServiceRole(full.admin, (tx) =>
      tx.query(`insert into public.knowledge_documents (org_id, title, body) select $1, 'Doc ' || i, 'x' from generate_series(1, 130) i`, [c.orgId]),
    );
    const page = await full.app.inject({ method: 'GET', url: `/v1/orgs/${c.orgId}/knowledge?limit=100000000`, headers: { authorization: `Bearer ${await signUserToken(c.userWithRole('owner'))}` } });
    expect(page.json().items).toHaveLength(100);
    expect(page.json().nextCursor).toEqual(expect.any(String));
  });

  const takesBody = (route: InventoryRoute) =>
    route.auth !== 'bearer' || Boolean(spec.paths[route.path.replace(/:([A-Za-z]+)/g, '{$1}')]![route.method.toLowerCase()]!.requestBody);

  it('resource consumption: deeply nested JSON is refused with a 4xx on every write route, never a 5xx', async () => {
    const deepObject = '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000);
    const deepArray = '['.repeat(100_000) + ']'.repeat(100_000);
    const writes = [...bearer.filter(isWrite), ...inventory.filter((r) => r.auth === 'webhook-signature')];
    for (const route of writes) {
      for (const payload of [deepObject, deepArray]) {
        const res = await full.app.inject({
          method: route.method,
          url: fillPath(route.path, paramsOf(a)),
          headers: { authorization: `Bearer ${a.owner}`, 'content-type': 'application/json' },
          payload,
        });
        const where = `${key(route)}: ${res.statusCode} ${res.body.slice(0, 200)}`;
        expect(res.statusCode, where).toBeLessThan(500);
        // Routes that take a body refuse it; the others (cancel, test) never read it.
        if (takesBody(route)) {
          expect([400, 401, 413], where).toContain(res.statusCode);
          expect(res.headers['content-type']).toContain('application/problem+json');
        }
      }
    }
  });

  it('resource consumption: a body over the limit answers 413 on every write route', async () => {
    const big = JSON.stringify({ name: 'x'.repeat(1024 * 1024 + 10) });
    const writes = [...bearer.filter(isWrite), ...inventory.filter((r) => r.auth === 'webhook-signature')];
    for (const route of writes) {
      const res = await full.app.inject({
        method: route.method,
        url: fillPath(route.path, paramsOf(a)),
        headers: { authorization: `Bearer ${a.owner}`, 'content-type': 'application/json' },
        payload: big,
      });
      expect(res.statusCode, key(route)).toBe(413);
      expect(res.json()).toMatchObject({ type: `${PROBLEMS}payload-too-large`, status: 413 });
    }
  });
});
