import type { Client } from '@temporalio/client';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type pg from 'pg';
import { z } from 'zod';

const READINESS_TIMEOUT_MS = 2_000;

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms).unref()),
  ]);
}

/** The gRPC status and message of a failed Temporal call, without the stack. */
export function temporalFailureReason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/\s+/g, ' ').slice(0, 500);
}

/** Flipped by the process on SIGTERM so load balancers stop sending traffic before we close. */
export interface Lifecycle {
  draining: boolean;
}

export function healthRoutes(deps: { pool: pg.Pool; temporal: Client; lifecycle?: Lifecycle; diagnoseTemporal?: () => Promise<string> }): FastifyPluginAsyncZod {
  return async (app) => {
    app.get('/healthz', { config: { auth: 'none', minRole: null }, schema: { operationId: 'getHealth', summary: 'Liveness: the process answers', response: { 200: z.object({ status: z.literal('ok') }) } } }, async () => ({ status: 'ok' as const }));

    const check = z.object({ status: z.enum(['ok', 'unavailable', 'draining']), checks: z.object({ postgres: z.string(), temporal: z.string() }) });
    app.get('/readyz', { config: { auth: 'none', minRole: null }, schema: { operationId: 'getReadiness', summary: 'Readiness: Postgres and Temporal reachable, not draining', response: { 200: check, 503: check } } }, async (_request, reply) => {
      if (deps.lifecycle?.draining) {
        return reply.code(503).send({ status: 'draining', checks: { postgres: 'not checked', temporal: 'not checked' } });
      }
      const [postgres, temporal] = await Promise.all([
        withTimeout(deps.pool.query('select 1'), READINESS_TIMEOUT_MS).then(
          () => 'ok',
          () => 'unreachable',
        ),
        withTimeout(deps.temporal.workflowService.getSystemInfo({}), READINESS_TIMEOUT_MS).then(
          () => 'ok',
          async (err: unknown) => {
            // The SDK says "Failed to connect" or "timed out" for a refused certificate as for an
            // outage; the diagnosis says which, here and in the log.
            const reason = deps.diagnoseTemporal ? `${temporalFailureReason(err)}; ${await deps.diagnoseTemporal()}` : temporalFailureReason(err);
            app.log.warn({ reason }, 'temporal not ready');
            return `unreachable: ${reason}`;
          },
        ),
      ]);
      const ready = postgres === 'ok' && temporal === 'ok';
      return reply.code(ready ? 200 : 503).send({ status: ready ? 'ok' : 'unavailable', checks: { postgres, temporal } });
    });
  };
}
