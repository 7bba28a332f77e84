import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { pageQuery } from '../pagination.js';
import { problemSchema } from '../schemas.js';
import type { ApiKeyService } from '../services/api-keys.js';

const scopeSchema = z.enum(['member', 'admin']);
const apiKeySchema = z.object({
  id: z.uuid(),
  name: z.string(),
  prefix: z.string(),
  scope: scopeSchema,
  createdBy: z.uuid().nullable(),
  createdAt: z.string(),
  lastUsedAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
});
const orgParams = z.object({ orgId: z.uuid() });
const problems = { 400: problemSchema, 403: problemSchema, 404: problemSchema };

/** Org API keys (admin): the key itself is in the 201 answer only; afterwards only its prefix. */
export function apiKeyRoutes(keys: ApiKeyService): FastifyPluginAsyncZod {
  return async (app) => {
    app.post('/orgs/:orgId/api-keys', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'createApiKey',
        summary: 'Create an API key (admin user); the key is shown once',
        params: orgParams,
        body: z.strictObject({ name: z.string().trim().min(1).max(200), scope: scopeSchema.default('member') }),
        response: { 201: apiKeySchema.extend({ key: z.string() }), 409: problemSchema, ...problems },
      },
      handler: async (request, reply) => reply.code(201).send(await keys.createKey(request.principal, request.params.orgId, request.body)),
    });

    app.get('/orgs/:orgId/api-keys', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'listApiKeys',
        summary: 'List API keys (admin)',
        params: orgParams,
        querystring: z.object(pageQuery),
        response: { 200: z.object({ items: z.array(apiKeySchema), nextCursor: z.string().nullable() }), ...problems },
      },
      handler: async (request) => keys.listKeys(request.principal, request.params.orgId, request.query),
    });

    app.delete('/orgs/:orgId/api-keys/:keyId', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'revokeApiKey',
        summary: 'Revoke an API key (admin)',
        params: z.object({ orgId: z.uuid(), keyId: z.uuid() }),
        response: { 204: z.null(), ...problems },
      },
      handler: async (request, reply) => {
        await keys.revokeKey(request.principal, request.params.orgId, request.params.keyId);
        return reply.code(204).send(null);
      },
    });
  };
}
