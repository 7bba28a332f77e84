import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemSchema } from '../schemas.js';
import { erasedCountsSchema, type LeadService } from '../services/crm/leads.js';

const leadParams = z.object({ orgId: z.uuid(), connectionId: z.uuid(), leadId: z.string().min(1).max(100).describe("The lead's id in the CRM (Kommo lead, HubSpot deal)") });
const problems = { 400: problemSchema, 403: problemSchema, 404: problemSchema };

/** A CRM lead: what the agents remember of it (members), and erasing everything held about it (admins). */
export function crmLeadRoutes(leads: LeadService): FastifyPluginAsyncZod {
  return async (app) => {
    app.get('/orgs/:orgId/crm/connections/:connectionId/leads/:leadId/memory', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: {
        operationId: 'getLeadMemory',
        summary: "What the agents remember of a lead: a summary per ended conversation, newest first (members)",
        params: leadParams,
        response: {
          200: z.object({
            items: z.array(z.object({ id: z.uuid(), summary: z.string(), agentId: z.uuid().nullable(), sourceRunId: z.uuid(), createdAt: z.string() })),
          }),
          ...problems,
        },
      },
      handler: async (request) => leads.leadMemory(request.principal, request.params.orgId, request.params.connectionId, request.params.leadId),
    });

    app.delete('/orgs/:orgId/crm/connections/:connectionId/leads/:leadId', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'eraseLead',
        summary: 'Erase everything held about a lead: its conversations and messages, memory and synced record (admin; data-protection requests; audit-logged)',
        params: leadParams,
        response: {
          200: z.object({ erased: erasedCountsSchema }),
          409: problemSchema,
          ...problems,
        },
      },
      handler: async (request) => leads.eraseLead(request.principal, request.params.orgId, request.params.connectionId, request.params.leadId),
    });
  };
}
