import type { FastifyInstance } from 'fastify';
import { problemSchema } from '../schemas.js';

/**
 * Declares the problem answers every route can give, so /openapi.json is complete and the
 * fuzzer can hold every answer to a declared schema: validation (400) and internal errors (500)
 * anywhere; oversized or non-JSON bodies (413, 415) on writes; and on authenticated routes
 * 401, 403, 404, 429 and 503 (signing keys unreachable). A route's own declaration wins.
 * `bearer` routes (api/route-access.ts) are the authenticated ones.
 */
export function registerStandardResponses(app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    const schema = route.schema as ({ hide?: boolean; security?: unknown[]; response?: Record<string, unknown> } & Record<string, unknown>) | undefined;
    if (!schema || schema.hide) return;
    const statuses = [400, 500];
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (methods.some((m) => m === 'POST' || m === 'PUT' || m === 'PATCH')) statuses.push(413, 415);
    const authenticated = route.config?.auth === 'bearer';
    if (authenticated) statuses.push(401, 403, 404, 429, 503);
    const response: Record<string, unknown> = { ...(schema.response ?? {}) };
    for (const status of statuses) if (!(String(status) in response)) response[String(status)] = problemSchema;
    schema.response = response;
  });
}
