import type { FastifyInstance } from 'fastify';
import { reportError } from '../../lib/sentry.js';
import { ProblemError } from '../problems.js';

/**
 * Unexpected errors (what the error handler turns into a 500 internal-error) go to Sentry when it
 * is on; expected ones (ProblemErrors, validation, malformed bodies: anything below 500) do not.
 * Only the route template and request id travel with the event; lib/sentry.ts scrubs the rest.
 */
export function registerErrorReporting(app: FastifyInstance): void {
  app.addHook('onError', async (request, _reply, error) => {
    if (error instanceof ProblemError) return;
    const status = (error as { statusCode?: number }).statusCode;
    if (status !== undefined && status < 500) return;
    reportError(error, {
      tags: { route: request.routeOptions.url ?? 'unmatched', method: request.method },
      extra: { requestId: request.id },
    });
  });
}
