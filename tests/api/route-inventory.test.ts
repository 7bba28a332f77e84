import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatRouteInventory } from '../../api/route-access.js';
import { fillPath, pathParams, startFullTestApp, type FullTestApp, type InventoryRoute } from '../support/full-app.js';

const committed = readFileSync(new URL('../../api/route-inventory.json', import.meta.url), 'utf8');
const inventory = (JSON.parse(committed) as { routes: InventoryRoute[] }).routes;
const key = (r: { method: string; path: string }) => `${r.method} ${r.path}`;

/**
 * Reads Fastify's route tree (printRoutes) back into "METHOD /path" pairs. HEAD twins of GET
 * routes and the CORS preflight (OPTIONS *) are Fastify's own and not listed in the inventory.
 */
function liveRoutes(tree: string): string[] {
  const stack: string[] = [];
  const out: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^([│├└─ ]*)(.+?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m || !m[2]) continue;
    const depth = m[1]!.length / 4 - 1;
    stack.length = depth;
    stack.push(m[2]);
    const path = stack.join('');
    for (const method of (m[3] ?? '').split(', ').filter(Boolean)) {
      if (method === 'HEAD' || (method === 'OPTIONS' && path === '*')) continue;
      out.push(`${method} ${path}`);
    }
  }
  return out.sort();
}

const UNAUTHENTICATED_ALLOWED = [/^\/$/, /^\/assets\/:file$/, /^\/console-config\.json$/, /^\/healthz$/, /^\/readyz$/, /^\/openapi\.json$/, /^\/docs(\/.*)?$/, /^\/v1\/webhooks\//, /^\/v1\/crm\/oauth\/callback\//];

describe('route inventory (api/route-inventory.json)', () => {
  let full: FullTestApp;
  let spec: { paths: Record<string, Record<string, { security?: unknown[] }>> };

  beforeAll(async () => {
    full = await startFullTestApp();
    spec = (await full.app.inject({ method: 'GET', url: '/openapi.json' })).json();
  });
  afterAll(async () => {
    await full?.close();
  });

  it('is exactly what npm run routes:inventory generates from the routes\' declarations (nobody edits it by hand)', () => {
    expect(committed, 'api/route-inventory.json is stale: run npm run routes:inventory').toBe(formatRouteInventory(full.app.routeInventory()));
  });

  it('lists exactly the routes the fully built app serves', () => {
    const live = liveRoutes(full.app.printRoutes({ commonPrefix: false }));
    expect(live.length).toBeGreaterThan(40);
    // printRoutes draws a wildcard under the node where its branch forks (/docs/static/* shows
    // as /docs/*), so wildcards are matched by the router instead of by name.
    const named = (list: string[]) => list.filter((k) => !k.endsWith('*'));
    expect(named(inventory.map(key)).sort()).toEqual(named(live));
    expect(inventory.filter((r) => r.path.endsWith('*')).length).toBe(live.filter((k) => k.endsWith('*')).length);
    for (const route of inventory) expect(full.app.hasRoute({ method: route.method, url: route.path }), key(route)).toBe(true);
    expect(new Set(inventory.map(key)).size).toBe(inventory.length);
  });

  it('agrees with /openapi.json: every API route is documented, nothing else is, and public routes say so', () => {
    const documented = inventory.filter((r) => r.auth !== 'public-docs');
    const toSpecPath = (p: string) => p.replace(/:([A-Za-z]+)/g, '{$1}');
    const specOps = Object.entries(spec.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    expect(specOps.sort()).toEqual(documented.map((r) => `${r.method} ${toSpecPath(r.path)}`).sort());
    for (const route of documented) {
      const op = spec.paths[toSpecPath(route.path)]![route.method.toLowerCase()]!;
      // Bearer routes inherit the document's bearerAuth requirement; the others opt out.
      if (route.auth === 'bearer') expect(op.security, key(route)).toBeUndefined();
      else expect(op.security, key(route)).toEqual([]);
    }
  });

  it('has a valid auth and role for every route, and a role for every bearer route of an org', () => {
    for (const route of inventory) {
      expect(['bearer', 'none', 'webhook-signature', 'oauth-state', 'public-docs'], key(route)).toContain(route.auth);
      expect([null, 'member', 'admin', 'owner'], key(route)).toContain(route.minRole);
      if (route.auth !== 'bearer') expect(route.minRole, key(route)).toBeNull();
      if (route.auth === 'bearer') expect(route.minRole !== null, key(route)).toBe(route.path.includes(':orgId'));
    }
  });

  it('refuses to build an app with a route that declares no access, or no operationId', async () => {
    const { default: Fastify } = await import('fastify');
    const { registerRouteAccess } = await import('../../api/route-access.js');
    const build = async (options: Record<string, unknown>) => {
      const app = Fastify();
      registerRouteAccess(app);
      app.get('/v1/orgs/:orgId/things', { ...options, handler: async () => ({}) });
      try {
        await app.ready();
      } finally {
        await app.close();
      }
    };
    await expect(build({ schema: { operationId: 'listThings', summary: 'List things' } })).rejects.toThrow(/declare config: \{ auth, minRole \}/);
    await expect(build({ config: { auth: 'bearer', minRole: null }, schema: { operationId: 'listThings', summary: 'List things' } })).rejects.toThrow(/declares its minRole/);
    await expect(build({ config: { auth: 'bearer', minRole: 'member' }, schema: { summary: 'List things' } })).rejects.toThrow(/operationId/);
    await expect(build({ config: { auth: 'bearer', minRole: 'member' }, schema: { operationId: 'listThings', summary: 'List things' } })).resolves.toBeUndefined();
  });

  it('leaves only health, docs, the console, webhook intake and the OAuth callback unauthenticated', () => {
    const open = inventory.filter((r) => r.auth !== 'bearer');
    for (const route of open) expect(UNAUTHENTICATED_ALLOWED.some((re) => re.test(route.path)), key(route)).toBe(true);
  });

  it('answers 401 problem+json on every other route without credentials, with junk, and with a token of another issuer secret', async () => {
    const forged = 'eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDAiLCJhdWQiOiJhdXRoZW50aWNhdGVkIn0.';
    for (const route of inventory.filter((r) => r.auth === 'bearer')) {
      const params = Object.fromEntries(pathParams(route.path).map((p) => [p, p === 'threadKey' ? 't1' : p === 'provider' ? 'hubspot' : randomUUID()]));
      const url = fillPath(route.path, params);
      for (const authorization of [undefined, 'Bearer not-a-token', `Bearer ${forged}`, 'Basic dXNlcjpwYXNz', 'Bearer gap_unknownkey']) {
        const res = await full.app.inject({
          method: route.method,
          url,
          headers: authorization ? { authorization } : {},
          ...(['POST', 'PUT', 'PATCH'].includes(route.method) ? { payload: {} } : {}),
        });
        expect(res.statusCode, `${key(route)} with ${authorization ?? 'no credentials'}`).toBe(401);
        expect(res.headers['content-type']).toContain('application/problem+json');
        expect(res.json().type).toBe('https://gpt-agent-platform.dev/problems/unauthenticated');
      }
    }
  });

  it('serves the unauthenticated routes without credentials', async () => {
    for (const path of ['/healthz', '/openapi.json', '/docs/']) {
      expect((await full.app.inject({ method: 'GET', url: path })).statusCode, path).toBe(200);
    }
    // Intake and callback check their own proof instead: a signature, a single-use state.
    const webhook = await full.app.inject({ method: 'POST', url: `/v1/webhooks/crm/hubspot/${randomUUID()}`, payload: '[]', headers: { 'content-type': 'application/json' } });
    expect([401, 404]).toContain(webhook.statusCode);
    const callback = await full.app.inject({ method: 'GET', url: `/v1/crm/oauth/callback/hubspot?code=x&state=${randomUUID()}` });
    expect(callback.statusCode).toBe(400);
  });
});
