import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemSchema } from '../schemas.js';
import type { CrmService } from '../services/crm-connections.js';
import { bindingFromCookies } from '../services/crm/oauth-binding.js';
import type { CrmWebhookService } from '../services/crm-webhooks.js';

const provider = z.enum(['kommo', 'hubspot']);

/**
 * The two unauthenticated CRM entry points, registered outside the authenticated /v1 scope:
 * webhook intake (verified by signature or URL secret) and the OAuth callback (verified by the
 * single-use `state`). Bodies are kept raw: HubSpot signs the exact bytes.
 */
export function crmPublicRoutes(deps: { crm: CrmService; webhooks: CrmWebhookService; bodyLimitBytes?: number }): FastifyPluginAsyncZod {
  return async (app) => {
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: deps.bodyLimitBytes ?? 1024 * 1024 }, (_req, body, done) => done(null, body));

    app.post('/webhooks/crm/:provider/:connectionId', {
      config: { auth: 'webhook-signature', minRole: null },
      schema: {
        operationId: 'receiveCrmWebhook',
        summary: 'CRM webhook intake',
        params: z.object({ provider, connectionId: z.uuid() }),
        querystring: z.object({ secret: z.string().max(200).optional() }),
        response: { 200: z.object({ received: z.number(), accepted: z.number(), duplicates: z.number() }), 400: problemSchema, 401: problemSchema, 404: problemSchema, 503: problemSchema },
      },
      handler: async (request) =>
        deps.webhooks.receive({
          provider: request.params.provider,
          connectionId: request.params.connectionId,
          rawBody: typeof request.body === 'string' ? request.body : '',
          url: request.url,
          origin: `${request.protocol}://${request.host}`,
          headers: request.headers,
          secret: request.query.secret,
        }),
    });

    app.get('/crm/oauth/callback/:provider', {
      config: { auth: 'oauth-state', minRole: null },
      schema: {
        operationId: 'completeCrmOAuth',
        summary: 'OAuth redirect target of the CRM apps',
        params: z.object({ provider }),
        querystring: z.looseObject({ code: z.string().min(1).max(2000), state: z.string().min(1).max(200), referer: z.string().max(300).optional() }),
        description:
          'A browser (Accept: text/html) is sent on to the console\'s CRM screen of the connection\'s org (303); other clients get the connection id and status as JSON.',
        response: { 200: z.object({ connectionId: z.uuid(), status: z.string() }), 303: z.null().describe('Back to the console: Location is /#/orgs/{orgId}/crm'), 400: problemSchema },
      },
      handler: async (request, reply) => {
        const connection = await deps.crm.completeOAuth(request.params.provider, request.query, bindingFromCookies(request.headers.cookie));
        // The CRM's consent page redirected the admin's browser here: a JSON page would strand them.
        if (request.headers.accept?.includes('text/html')) return reply.code(303).header('location', `/#/orgs/${connection.orgId}/crm`).send(null);
        return { connectionId: connection.id, status: connection.status };
      },
    });
  };
}
