import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemSchema } from '../schemas.js';
import type { LlmProviderService } from '../services/llm-provider.js';

const providerSchema = z.object({
  source: z.enum(['org', 'deployment']).describe("Whose provider the org's runs use: its own, or the service's"),
  provider: z
    .object({
      baseUrl: z.string(),
      defaultModel: z.string().describe("The model every run of the org uses on this provider"),
      embeddingModel: z.string().nullable().describe('Embeds knowledge chunks and search queries; null: lexical retrieval only'),
      keySet: z.literal(true).describe('The key itself is never shown again'),
      keyHint: z.string().nullable().describe('The last four characters of a long key (…abcd); null for short keys'),
      keyUpdatedAt: z.string(),
      updatedBy: z.uuid().nullable(),
      updatedAt: z.string(),
    })
    .nullable()
    .describe('null: the org uses the service\'s provider'),
});

// A provider's model id as its API takes it (`gpt-4o`, `openai/gpt-4o`, `llama3.1:8b`): no spaces or control characters.
const modelName = z.string().trim().min(1).max(200).regex(/^[\x21-\x7e]+$/, 'a model id as the provider names it, without spaces');
const providerBody = z.strictObject({
  baseUrl: z.string().trim().min(1).max(2048).describe('An OpenAI-compatible API root, e.g. https://api.openai.com/v1 (https, public address)'),
  apiKey: z
    .string()
    .trim()
    .min(1)
    .max(1000)
    .optional()
    .describe('Sent as the bearer token; required the first time and whenever baseUrl changes, otherwise omit it to keep the current key'),
  defaultModel: modelName.describe("Every run of the org uses it on this provider; neither the service's model catalog nor the org's allowedModels apply (they govern the service's provider)"),
  embeddingModel: modelName.nullable().optional().describe('null or absent: no embeddings (lexical retrieval only)'),
});
const params = z.object({ orgId: z.uuid() });
const problems = { 400: problemSchema, 403: problemSchema, 404: problemSchema };

/** The org's own LLM provider: members read its settings, admins set or remove it; the key is write-only. */
export function llmProviderRoutes(providers: LlmProviderService): FastifyPluginAsyncZod {
  return async (app) => {
    app.get('/orgs/:orgId/llm-provider', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: { operationId: 'getLlmProvider', summary: "The organization's own LLM provider, if it set one (never the key)", params, response: { 200: providerSchema, ...problems } },
      handler: async (request) => providers.getProvider(request.principal, request.params.orgId),
    });

    app.put('/orgs/:orgId/llm-provider', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'setLlmProvider',
        summary: "Set the organization's own OpenAI-compatible provider, key and models (admin); the key is never shown again",
        params,
        body: providerBody,
        response: { 200: providerSchema, ...problems },
      },
      handler: async (request) => providers.setProvider(request.principal, request.params.orgId, request.body),
    });

    app.delete('/orgs/:orgId/llm-provider', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: { operationId: 'deleteLlmProvider', summary: "Remove the organization's provider and key; runs use the service's provider again (admin)", params, response: { 204: z.null(), ...problems } },
      handler: async (request, reply) => {
        await providers.deleteProvider(request.principal, request.params.orgId);
        return reply.code(204).send(null);
      },
    });
  };
}
