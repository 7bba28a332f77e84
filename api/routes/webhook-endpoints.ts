import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { orgEventTypeSchema } from '../../lib/org-events.js';
import { pageQuery } from '../pagination.js';
import { problemSchema } from '../schemas.js';
import type { WebhookEndpointService } from '../services/webhook-endpoints.js';

const endpointSchema = z.object({
  id: z.uuid(),
  url: z.string(),
  description: z.string().nullable(),
  eventTypes: z.array(orgEventTypeSchema).describe('Event types delivered to this endpoint; empty means all'),
  createdBy: z.uuid().nullable(),
  createdAt: z.string(),
});
const attemptSchema = z.object({
  attempt: z.number().int(),
  statusCode: z.number().int().nullable(),
  error: z.string().nullable(),
  durationMs: z.number().int(),
  attemptedAt: z.string(),
});
const deliverySchema = z.object({
  id: z.uuid(),
  eventId: z.uuid().describe('The `webhook-id` the receiver got (the same on every attempt)'),
  eventType: orgEventTypeSchema,
  status: z.enum(['pending', 'delivered', 'failed']),
  attempts: z.number().int(),
  lastStatusCode: z.number().int().nullable(),
  lastError: z.string().nullable(),
  nextAttemptAt: z.string().nullable(),
  deliveredAt: z.string().nullable(),
  createdAt: z.string(),
  attemptLog: z.array(attemptSchema),
});
const orgParams = z.object({ orgId: z.uuid() });
const endpointParams = z.object({ orgId: z.uuid(), endpointId: z.uuid() });
const problems = { 400: problemSchema, 403: problemSchema, 404: problemSchema };

/** Org webhook endpoints (admin): the signing secret is in the 201 answer only. */
export function webhookEndpointRoutes(endpoints: WebhookEndpointService): FastifyPluginAsyncZod {
  return async (app) => {
    app.post('/orgs/:orgId/webhook-endpoints', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'createWebhookEndpoint',
        summary: 'Add a webhook endpoint (admin); its Standard Webhooks signing secret is shown once',
        params: orgParams,
        body: z.strictObject({
          url: z.string().trim().min(1).max(2048),
          description: z.string().trim().max(200).optional(),
          eventTypes: z.array(orgEventTypeSchema).max(10).default([]),
        }),
        response: { 201: endpointSchema.extend({ secret: z.string().describe('whsec_…: verify signatures with it; not shown again') }), 409: problemSchema, ...problems },
      },
      handler: async (request, reply) => reply.code(201).send(await endpoints.createEndpoint(request.principal, request.params.orgId, request.body)),
    });

    app.get('/orgs/:orgId/webhook-endpoints', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'listWebhookEndpoints',
        summary: 'List webhook endpoints (admin)',
        params: orgParams,
        response: { 200: z.object({ items: z.array(endpointSchema) }), ...problems },
      },
      handler: async (request) => endpoints.listEndpoints(request.principal, request.params.orgId),
    });

    app.get('/orgs/:orgId/webhook-endpoints/:endpointId', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: { operationId: 'getWebhookEndpoint', summary: 'Get a webhook endpoint (admin)', params: endpointParams, response: { 200: endpointSchema, ...problems } },
      handler: async (request) => endpoints.getEndpoint(request.principal, request.params.orgId, request.params.endpointId),
    });

    app.delete('/orgs/:orgId/webhook-endpoints/:endpointId', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: { operationId: 'deleteWebhookEndpoint', summary: 'Delete a webhook endpoint and its pending deliveries (admin)', params: endpointParams, response: { 204: z.null(), ...problems } },
      handler: async (request, reply) => {
        await endpoints.deleteEndpoint(request.principal, request.params.orgId, request.params.endpointId);
        return reply.code(204).send(null);
      },
    });

    app.get('/orgs/:orgId/webhook-endpoints/:endpointId/deliveries', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'listWebhookDeliveries',
        summary: 'The delivery log of a webhook endpoint, newest first, with every attempt (admin)',
        params: endpointParams,
        querystring: z.object(pageQuery),
        response: { 200: z.object({ items: z.array(deliverySchema), nextCursor: z.string().nullable() }), ...problems },
      },
      handler: async (request) => endpoints.listDeliveries(request.principal, request.params.orgId, request.params.endpointId, request.query),
    });
  };
}
