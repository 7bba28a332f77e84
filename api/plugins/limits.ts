import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type pg from 'pg';
import { withPrincipal } from '../../lib/db.js';
import { ProblemError } from '../problems.js';
import { orgRoleOf } from '../services/org-access.js';

/**
 * Request budgets. Each request is charged to the party that sent it, and an organization's
 * budget only to requests known to have been served for it:
 *
 * - every authenticated request counts against its caller: the user (one budget across all their
 *   orgs) or the API key;
 * - a request that fails authentication, and any failed request to an unauthenticated route
 *   (webhook intake, OAuth callback), counts against the client's IP;
 * - the org in the path is charged after the answer, and only for answers a non-member can never
 *   get (success, or a conflict with the org's own state). A 401/403/404 is the caller's, so a
 *   stranger probing another org's paths spends their own budget, never that org's.
 *
 * Ids are lowercased before they key a budget: Postgres reads UUIDs case-insensitively, so an
 * upper-cased org id is the same org and must not be a fresh budget.
 *
 * Fixed windows in process memory: each API replica enforces its share. That bounds abuse
 * without a shared store; a cluster-wide quota (billing) lives in Postgres, not here.
 */
export interface RateLimitOptions {
  /** Requests per window served for one organization (all its users and keys together). */
  perOrg: number;
  /** Requests per window for one API key. */
  perApiKey: number;
  /** Requests per window for one user, across every org they belong to. */
  perUser: number;
  /** Failed requests per window from one IP: authentication failures and failed unauthenticated calls. */
  perIp: number;
  windowMs: number;
  now?: () => number;
}

export const defaultRateLimits: RateLimitOptions = { perOrg: 1200, perApiKey: 300, perUser: 600, perIp: 120, windowMs: 60_000 };

interface Window {
  startedAt: number;
  count: number;
}

export function createWindowLimiter(windowMs: number, now: () => number = Date.now) {
  const windows = new Map<string, Window>();
  let lastSweep = now();
  const current = (key: string, t: number): Window | undefined => {
    if (t - lastSweep > windowMs) {
      // Forget finished windows so the map holds only keys active in the last window.
      for (const [k, w] of windows) if (t - w.startedAt >= windowMs) windows.delete(k);
      lastSweep = t;
    }
    const window = windows.get(key);
    return window && t - window.startedAt < windowMs ? window : undefined;
  };
  return {
    /** Counts one request; answers how long to wait when `key` is over `max`, else 0. */
    hit(key: string, max: number): number {
      const t = now();
      let window = current(key, t);
      if (!window) windows.set(key, (window = { startedAt: t, count: 0 }));
      window.count++;
      return window.count > max ? window.startedAt + windowMs - t : 0;
    },
    /** How long to wait before `key` may be charged again (its budget is spent), else 0; charges nothing. */
    exhausted(key: string, max: number): number {
      const t = now();
      const window = current(key, t);
      return window && window.count >= max ? window.startedAt + windowMs - t : 0;
    },
  };
}

export type WindowLimiter = ReturnType<typeof createWindowLimiter>;

function refuse(reply: FastifyReply, waitMs: number): never {
  const seconds = Math.max(1, Math.ceil(waitMs / 1000));
  reply.header('retry-after', String(seconds));
  throw new ProblemError('rate-limited', `Too many requests; retry after ${seconds} s.`);
}

const orgBudgetKey = (orgId: string) => `org:${orgId.toLowerCase()}`;
const ipBudgetKey = (request: FastifyRequest) => `ip:${request.ip}`;

function pathOrgId(request: FastifyRequest): string | undefined {
  const orgId = (request.params as { orgId?: unknown } | undefined)?.orgId;
  return typeof orgId === 'string' ? orgId : undefined;
}

/** Answers that only a caller with access to the org can get: the work was done for the org. */
function servedForOrg(statusCode: number): boolean {
  return statusCode < 400 || statusCode === 409 || statusCode === 422;
}

/**
 * Budgets of the authenticated scope. `beforeAuthentication` runs ahead of credential checks
 * (an IP that keeps failing them is refused before we verify anything); the rest runs once the
 * principal is known.
 */
export function registerRateLimits(scope: FastifyInstance, options: RateLimitOptions & { pool: pg.Pool; limiter?: WindowLimiter }) {
  const limiter = options.limiter ?? createWindowLimiter(options.windowMs, options.now);

  const beforeAuthentication = async (request: FastifyRequest, reply: FastifyReply) => {
    const waitMs = limiter.exhausted(ipBudgetKey(request), options.perIp);
    if (waitMs > 0) refuse(reply, waitMs);
  };

  scope.addHook('preHandler', async (request, reply) => {
    const principal = request.principal;
    const caller = principal.kind === 'api_key' ? limiter.hit(`key:${principal.keyId}`, options.perApiKey) : principal.kind === 'user' ? limiter.hit(`user:${principal.userId.toLowerCase()}`, options.perUser) : 0;
    if (caller > 0) refuse(reply, caller);

    const orgId = pathOrgId(request);
    if (orgId === undefined) return;
    const orgWait = limiter.exhausted(orgBudgetKey(orgId), options.perOrg);
    if (orgWait === 0) return;
    // The org's budget is spent. Only its own members and keys are refused for that; anyone else
    // goes on to the 404 they would get anyway, so the 429 reveals nothing about the org. An API
    // key was already matched to the path's org by the authenticator.
    const isMember = principal.kind === 'api_key' || (await withPrincipal(options.pool, principal, (tx) => orgRoleOf(tx, orgId))) !== null;
    if (isMember) refuse(reply, orgWait);
  });

  scope.addHook('onResponse', async (request, reply) => {
    const principal = request.principal as FastifyRequest['principal'] | null;
    if (!principal) {
      // Authentication failed (or never ran): the IP pays.
      if (reply.statusCode >= 400 && reply.statusCode !== 429) limiter.hit(ipBudgetKey(request), options.perIp);
      return;
    }
    const orgId = pathOrgId(request);
    if (orgId !== undefined && servedForOrg(reply.statusCode)) limiter.hit(orgBudgetKey(orgId), options.perOrg);
  });

  return { beforeAuthentication };
}

/**
 * Budget of the unauthenticated routes (webhook intake, OAuth callbacks): failures count against
 * the client's IP, and an IP over its budget is refused before any verification work. Accepted
 * deliveries are never charged, since CRMs send every tenant's webhooks from the same addresses.
 */
export function registerPublicRateLimits(scope: FastifyInstance, options: RateLimitOptions & { limiter?: WindowLimiter }): void {
  const limiter = options.limiter ?? createWindowLimiter(options.windowMs, options.now);
  scope.addHook('onRequest', async (request, reply) => {
    const waitMs = limiter.exhausted(ipBudgetKey(request), options.perIp);
    if (waitMs > 0) refuse(reply, waitMs);
  });
  scope.addHook('onResponse', async (request, reply) => {
    if (reply.statusCode >= 400 && reply.statusCode < 500 && reply.statusCode !== 429) limiter.hit(ipBudgetKey(request), options.perIp);
  });
}
