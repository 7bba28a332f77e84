import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';
import { declareScopeAccess } from '../route-access.js';

/**
 * The OpenAPI 3.1 document is generated from the same zod schemas that validate requests and
 * serialize responses, so it cannot drift from what the server does. Must be registered before
 * any route: @fastify/swagger learns routes as they are added.
 */
export async function registerOpenApi(app: FastifyInstance, options: { publicUrl?: string } = {}): Promise<void> {
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      // Client generators take their base URL from here; without API_PUBLIC_URL the document
      // names the origin it is served from.
      servers: [options.publicUrl ? { url: options.publicUrl.replace(/\/+$/, ''), description: 'This deployment' } : { url: '/', description: 'The origin serving this document' }],
      info: {
        title: 'gpt-agent-platform API',
        version: '1',
        description:
          'AI agents for sales teams inside their CRM. Errors are application/problem+json (RFC 9457) with a stable `type`; see docs/api.md.',
        // Not open source: an SPDX reference of our own, as OpenAPI 3.1 asks of a licence.
        license: { name: 'Proprietary', identifier: 'LicenseRef-Proprietary' },
      },
      components: {
        securitySchemes: {
          bearerAuth: {
            type: 'http',
            scheme: 'bearer',
            description: 'A Supabase access token (JWT) or an organization API key.',
          },
        },
      },
      security: [{ bearerAuth: [] }],
    },
    transform: (input) => {
      const out = jsonSchemaTransform(input);
      // An event stream's 200 is written to the raw socket, never serialized, so it has no zod
      // schema; the declaration (`stream: true`) still tells clients what they get.
      if (input.route.config?.stream && out.schema && !out.schema.hide) {
        const response = (out.schema.response ?? {}) as Record<string, unknown>;
        out.schema.response = {
          ...response,
          200: { description: 'A stream of Server-Sent Events', content: { 'text/event-stream': { schema: { type: 'string' } } } },
        };
      }
      return out;
    },
  });
  // The UI plugin's routes cannot take options of ours, so its scope declares them public.
  await app.register(async (docs) => {
    declareScopeAccess(docs, { auth: 'public-docs', minRole: null });
    await docs.register(fastifySwaggerUi, { routePrefix: '/docs', staticCSP: true });
  });
  app.get('/openapi.json', { config: { auth: 'public-docs', minRole: null }, schema: { hide: true } }, async () => app.swagger());
}
