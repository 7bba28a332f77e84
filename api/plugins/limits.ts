import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ProblemError } from '../problems.js';

/**
 * Request budgets per organization and per API key, checked after authentication so the key
 * is the verified principal, not a spoofable header. One org cannot starve the service for the
 * others, and one runaway script with a key cannot spend its org's whole budget.
 *
 * Fixed windows in process memory: each API replica enforces its share. That bounds abuse
 * without a shared store; a cluster-wide quota (billing) lives in Postgres, not here.
 */
export interface RateLimitOptions {
  /** Requests per window for one organization (all its users and keys together). */
  perOrg: number;
  /** Requests per window for one API key. */
  perApiKey: number;
  /** Requests per window for one user on routes outside an org (e.g. listing my orgs). */
  perUser: number;
  windowMs: number;
  now?: () => number;
}

export const defaultRateLimits: RateLimitOptions = { perOrg: 1200, perApiKey: 300, perUser: 300, windowMs: 60_000 };

interface Window {
  startedAt: number;
  count: number;
}

export function createWindowLimiter(windowMs: number, now: () => number = Date.now) {
  const windows = new Map<string, Window>();
  let lastSweep = now();
  return {
    /** Counts one request; answers how long to wait when `key` is over `max`, else 0. */
    hit(key: string, max: number): number {
      const t = now();
      if (t - lastSweep > windowMs) {
        // Forget finished windows so the map holds only keys active in the last window.
        for (const [k, w] of windows) if (t - w.startedAt >= windowMs) windows.delete(k);
        lastSweep = t;
      }
      let window = windows.get(key);
      if (!window || t - window.startedAt >= windowMs) {
        window = { startedAt: t, count: 0 };
        windows.set(key, window);
      }
      window.count++;
      return window.count > max ? window.startedAt + windowMs - t : 0;
    },
  };
}

export function registerRateLimits(scope: FastifyInstance, options: RateLimitOptions): void {
  const limiter = createWindowLimiter(options.windowMs, options.now);
  scope.addHook('preHandler', async (request: FastifyRequest, reply) => {
    const principal = request.principal;
    const orgId = (request.params as { orgId?: unknown } | undefined)?.orgId;
    const checks: Array<[string, number]> = [];
    if (typeof orgId === 'string') checks.push([`org:${orgId}`, options.perOrg]);
    if (principal.kind === 'api_key') checks.push([`key:${principal.keyId}`, options.perApiKey]);
    else if (principal.kind === 'user' && typeof orgId !== 'string') checks.push([`user:${principal.userId}`, options.perUser]);

    let waitMs = 0;
    for (const [key, max] of checks) waitMs = Math.max(waitMs, limiter.hit(key, max));
    if (waitMs > 0) {
      reply.header('retry-after', String(Math.ceil(waitMs / 1000)));
      throw new ProblemError('rate-limited', `Too many requests; retry after ${Math.ceil(waitMs / 1000)} s.`);
    }
  });
}
