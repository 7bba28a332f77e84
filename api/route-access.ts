import type { FastifyInstance, RouteOptions } from 'fastify';
import type { OrgRole } from './services/org-access.js';

/**
 * How a caller proves who they are on a route: `bearer` (a Supabase token or an org API key),
 * `none` (health), `webhook-signature` (CRM intake checks the provider's signature),
 * `oauth-state` (the OAuth callback checks a single-use state), `public-docs` (the API docs and
 * the console's pages and assets, outside /openapi.json).
 */
export const ROUTE_AUTH_KINDS = ['bearer', 'none', 'webhook-signature', 'oauth-state', 'public-docs'] as const;
export type RouteAuth = (typeof ROUTE_AUTH_KINDS)[number];

/**
 * What every route declares in its options (`config`), so one place says who may call it:
 * `minRole` is the least org role the route's service lets through (null: any signed-in user,
 * or no org involved); `stream` marks Server-Sent Events routes. The services still enforce the
 * role inside the request's transaction; tests/api/sweeps.test.ts proves they enforce exactly
 * this, and api/route-inventory.json is generated from it (`npm run routes:inventory`).
 */
export interface RouteAccess {
  auth: RouteAuth;
  minRole: OrgRole | null;
  stream?: boolean;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    auth?: RouteAuth;
    minRole?: OrgRole | null;
    stream?: boolean;
  }
  interface FastifyInstance {
    /** Every route's method, path and declared access, sorted by path then method (HEAD and the CORS preflight left out). */
    routeInventory(): InventoryRoute[];
  }
}

export interface InventoryRoute extends RouteAccess {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
}

const OPERATION_ID = /^[a-z][A-Za-z0-9]*$/;
const SCOPE_ACCESS = Symbol('scopeAccess');

/**
 * The declaration for every route of `scope` that makes none, for third-party plugins whose
 * routes take no options of ours (the Swagger UI). Register them inside `scope`.
 */
export function declareScopeAccess(scope: FastifyInstance, access: RouteAccess): void {
  scope.decorate(SCOPE_ACCESS, access);
}
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

type RouteSchema = { hide?: boolean; operationId?: unknown; summary?: unknown; security?: unknown[] } & Record<string, unknown>;

/**
 * Checks every route's declaration as it is added (a route without one fails the app's build,
 * naming the route) and records it for `app.routeInventory()`. Register before any route: hooks
 * only see routes added after them. Documented routes also need an `operationId` (camelCase,
 * unique: client generators name their methods after it) and a `summary`; routes that are not
 * `bearer` are marked `security: []` in the document from the declaration.
 */
export function registerRouteAccess(app: FastifyInstance): void {
  const routes: InventoryRoute[] = [];
  const operationIds = new Map<string, string>();

  app.addHook('onRoute', function (this: FastifyInstance & { [SCOPE_ACCESS]?: RouteAccess }, route: RouteOptions) {
    const methods = (Array.isArray(route.method) ? route.method : [route.method]).map((m) => m.toUpperCase());
    // Fastify's own twins: HEAD for every GET, and @fastify/cors's preflight.
    if (methods.every((m) => m === 'HEAD' || m === 'OPTIONS')) return;
    const where = `${methods.join(',')} ${route.url}`;
    if (this[SCOPE_ACCESS] && route.config?.auth === undefined) route.config = { ...route.config, ...this[SCOPE_ACCESS] };
    const config = (route.config ?? {}) as Partial<RouteAccess>;
    const { auth, minRole } = config;
    if (!auth || !ROUTE_AUTH_KINDS.includes(auth) || minRole === undefined) {
      throw new Error(`${where}: declare config: { auth, minRole } in the route options (api/route-access.ts; docs/api.md "Adding a route")`);
    }
    if (auth !== 'bearer' && minRole !== null) throw new Error(`${where}: only bearer routes have a minRole`);
    if (auth === 'bearer' && route.url.includes(':orgId') !== (minRole !== null)) {
      throw new Error(`${where}: a bearer route under /orgs/:orgId declares its minRole, any other declares null`);
    }

    const schema = route.schema as RouteSchema | undefined;
    if (schema && !schema.hide) {
      const { operationId, summary } = schema;
      if (typeof operationId !== 'string' || !OPERATION_ID.test(operationId)) throw new Error(`${where}: declare a camelCase schema.operationId`);
      const taken = operationIds.get(operationId);
      if (taken && taken !== where) throw new Error(`${where}: operationId ${operationId} is already used by ${taken}`);
      operationIds.set(operationId, where);
      if (typeof summary !== 'string' || summary.length === 0) throw new Error(`${where}: declare a schema.summary`);
      if (auth !== 'bearer') schema.security = [];
    } else if (auth === 'bearer') {
      throw new Error(`${where}: a bearer route belongs in /openapi.json; do not hide it`);
    }

    const entry = (method: InventoryRoute['method'], path: string): InventoryRoute => ({ method, path, auth, minRole, ...(config.stream ? { stream: true } : {}) });
    for (const method of methods) {
      if (!(METHODS as readonly string[]).includes(method)) continue;
      routes.push(entry(method as InventoryRoute['method'], route.url));
      // A plugin's `/` under a prefix is served with and without the slash, but onRoute only
      // hears of the one without (fastify/lib/route.js, prefixTrailingSlash 'both').
      const prefixed = route as RouteOptions & { routePath?: string; prefix?: string };
      if (prefixed.routePath === '' && prefixed.prefix && (route.prefixTrailingSlash ?? 'both') === 'both') routes.push(entry(method as InventoryRoute['method'], `${route.url}/`));
    }
  });

  app.decorate('routeInventory', () =>
    [...routes].sort((a, b) => (a.path === b.path ? METHODS.indexOf(a.method) - METHODS.indexOf(b.method) : a.path < b.path ? -1 : 1)),
  );
}

/** api/route-inventory.json's text: one route a line, so a diff shows which route changed. */
export function formatRouteInventory(routes: InventoryRoute[]): string {
  const comment =
    'Generated from the routes\' declarations (config: { auth, minRole, stream }) by `npm run routes:inventory`; do not edit. ' +
    'tests/api/route-inventory.test.ts fails when it differs from the app; the sweeps (tests/api/sweeps.test.ts) and the fuzzer (tests/api/fuzz.test.ts) are driven by it. ' +
    'auth: ' + ROUTE_AUTH_KINDS.join(' | ') + '. minRole: the least org role the route needs (null: any signed-in user, or no org involved).';
  const lines = routes.map((r) => `    ${JSON.stringify(r)}`);
  return `{\n  "$comment": ${JSON.stringify(comment)},\n  "routes": [\n${lines.join(',\n')}\n  ]\n}\n`;
}
