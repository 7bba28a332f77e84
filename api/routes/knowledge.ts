import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { pageQuery } from '../pagination.js';
import { problemSchema } from '../schemas.js';
import type { KnowledgeService } from '../services/knowledge.js';
import type { UsageService } from '../services/usage.js';

const documentSchema = z.object({
  id: z.uuid(),
  orgId: z.uuid(),
  title: z.string(),
  body: z.string(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
const fields = { title: z.string().trim().min(1).max(500), body: z.string().max(200_000) };
const orgParams = z.object({ orgId: z.uuid() });
const docParams = z.object({ orgId: z.uuid(), documentId: z.uuid() });
const problems = { 400: problemSchema, 403: problemSchema, 404: problemSchema };

/** The org's knowledge base (searched by the knowledge_search tool): members read, admins write. */
export function knowledgeRoutes(knowledge: KnowledgeService): FastifyPluginAsyncZod {
  return async (app) => {
    app.post('/orgs/:orgId/knowledge', {
      schema: { summary: 'Add a knowledge document', params: orgParams, body: z.strictObject(fields), response: { 201: documentSchema, ...problems } },
      handler: async (request, reply) => {
        const doc = await knowledge.create(request.principal, request.params.orgId, request.body);
        reply.header('location', `/v1/orgs/${doc.orgId}/knowledge/${doc.id}`);
        return reply.code(201).send(doc);
      },
    });
    app.get('/orgs/:orgId/knowledge', {
      schema: {
        summary: 'List knowledge documents, optionally full-text filtered by q',
        params: orgParams,
        querystring: z.object({ q: z.string().min(1).max(500).optional(), ...pageQuery }),
        response: { 200: z.object({ items: z.array(documentSchema), nextCursor: z.string().nullable() }), ...problems },
      },
      handler: async (request) => knowledge.list(request.principal, request.params.orgId, request.query),
    });
    app.get('/orgs/:orgId/knowledge/:documentId', {
      schema: { summary: 'Get a knowledge document', params: docParams, response: { 200: documentSchema, ...problems } },
      handler: async (request) => knowledge.get(request.principal, request.params.orgId, request.params.documentId),
    });
    app.patch('/orgs/:orgId/knowledge/:documentId', {
      schema: { summary: 'Change a knowledge document', params: docParams, body: z.strictObject(fields).partial(), response: { 200: documentSchema, ...problems } },
      handler: async (request) => knowledge.update(request.principal, request.params.orgId, request.params.documentId, request.body),
    });
    app.delete('/orgs/:orgId/knowledge/:documentId', {
      schema: { summary: 'Delete a knowledge document', params: docParams, response: { 204: z.null(), ...problems } },
      handler: async (request, reply) => {
        await knowledge.remove(request.principal, request.params.orgId, request.params.documentId);
        return reply.code(204).send(null);
      },
    });
  };
}

const isoDay = z.iso.date();

/** Metered usage per UTC day: runs, LLM calls, tokens and cost. */
export function usageRoutes(usage: UsageService): FastifyPluginAsyncZod {
  return async (app) => {
    const counters = { runs: z.number(), llmCalls: z.number(), inputTokens: z.number(), outputTokens: z.number(), costUsd: z.number() };
    app.get('/orgs/:orgId/usage', {
      schema: {
        summary: 'Usage per day between from and to (inclusive, UTC)',
        params: orgParams,
        querystring: z.object({ from: isoDay, to: isoDay }),
        response: {
          200: z.object({ from: z.string(), to: z.string(), items: z.array(z.object({ day: z.string(), ...counters })), totals: z.object(counters) }),
          400: problemSchema,
          404: problemSchema,
        },
      },
      handler: async (request) => usage.getUsage(request.principal, request.params.orgId, request.query.from, request.query.to),
    });
  };
}
