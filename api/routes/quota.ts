import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemSchema } from '../schemas.js';
import type { QuotaService } from '../services/quota.js';

const quotaSchema = z.object({
  dailyTokenQuota: z.number().int().describe('Tokens (input + output) the org may use per UTC day, in effect now'),
  dailyTokenQuotaSource: z.enum(['org', 'operator-default']),
  operatorDefaultDailyTokenQuota: z.number().int(),
  operatorMaxDailyTokenQuota: z.number().int(),
  runTokenBudgetDefault: z.number().int().describe('Tokens a run may use when its agent sets no runTokenBudget'),
  tokensToday: z.number().int(),
  reservedTokens: z.number().int().describe('Tokens reserved by LLM calls in flight'),
  allowedModels: z.array(z.string()).nullable().describe("The models this org's agents may use; null: every model the service offers"),
  operatorModels: z.array(z.string()).nullable().describe('The models the service offers; null: any'),
});

const modelPattern = z.string().trim().min(1).max(200).regex(/^[^*]*\*?$/, 'a model id, or a prefix ending in *');
const quotaBody = z.strictObject({
  dailyTokenQuota: z.number().int().positive().nullable().optional().describe("null: the operator's default"),
  allowedModels: z.array(modelPattern).min(1).max(100).nullable().optional().describe('null: every model the service offers'),
});
const params = z.object({ orgId: z.uuid() });
const problems = { 400: problemSchema, 403: problemSchema, 404: problemSchema };

/** The org's spend ceiling and models: members read, admins set within the operator's limits. */
export function quotaRoutes(quota: QuotaService): FastifyPluginAsyncZod {
  return async (app) => {
    app.get('/orgs/:orgId/quota', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: { operationId: 'getOrgQuota', summary: "The organization's daily token quota, usage today and allowed models", params, response: { 200: quotaSchema, ...problems } },
      handler: async (request) => quota.getQuota(request.principal, request.params.orgId),
    });

    app.put('/orgs/:orgId/quota', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'setOrgQuota',
        summary: "Set the organization's daily token quota (within the operator's maximum) and allowed models (admin)",
        params,
        body: quotaBody,
        response: { 200: quotaSchema, ...problems },
      },
      handler: async (request) => quota.setQuota(request.principal, request.params.orgId, request.body),
    });
  };
}
