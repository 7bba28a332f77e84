import type { FastifyInstance } from 'fastify';
import { httpRequestDuration, httpServerErrors } from '../../lib/metrics.js';

/**
 * Request duration by route *template* (`/v1/orgs/:orgId/runs/:runId`, never the concrete URL,
 * which would create a time series per id) and status; 5xx answers also count as server errors.
 * Registered on the root instance so every route, 404s and rejected requests included, is seen.
 */
export function registerRequestMetrics(app: FastifyInstance): void {
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const labels = { method: request.method, route, status_code: String(reply.statusCode) };
    httpRequestDuration.observe(labels, reply.elapsedTime / 1000);
    if (reply.statusCode >= 500) httpServerErrors.inc(labels);
  });
}
