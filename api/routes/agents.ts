import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { agentRuleFields } from '../../lib/agent-rules.js';
import { pageQuery } from '../pagination.js';
import { problemSchema } from '../schemas.js';
import type { AgentService } from '../services/agents.js';

const toolName = z.string().regex(/^[a-z][a-z0-9_]{0,63}$/, 'must be a tool name like knowledge_search');
const toolList = z.array(toolName).max(50).refine((names) => new Set(names).size === names.length, 'must not repeat a tool');

const agentFields = {
  name: z.string().trim().min(1).max(200),
  model: z.string().min(1).max(200),
  instructions: z.string().max(100_000),
  temperature: z.number().min(0).max(2),
  maxOutputTokens: z.number().int().min(1).max(200_000),
  maxSteps: z.number().int().min(1).max(100),
  allowedTools: toolList,
  approvalTools: toolList,
  runTokenBudget: z.number().int().positive().max(100_000_000).nullable(),
  busyPolicy: z.enum(['queue', 'reject', 'interrupt']),
  approvalTimeoutSeconds: z.number().int().min(1).max(2_592_000),
  /** The CRM connection (of the same org) the agent's crm_* tools act on. */
  crmConnectionId: z.uuid().nullable(),
  /** CRM webhook events that start or message this agent's runs (on its CRM connection, which they require). */
  triggers: z
    .array(
      z.discriminatedUnion('event', [
        z.strictObject({
          event: z.literal('lead_stage_entered'),
          stageId: z.string().min(1).max(100),
          pipelineId: z.string().min(1).max(100).optional(),
          /** The same lead entering the same stage again within this many minutes starts no new run (default 60; 0 = always). */
          cooldownMinutes: z.number().int().min(0).max(10_080).optional(),
        }),
        z.strictObject({ event: z.literal('incoming_message') }),
      ]),
    )
    .max(20),
  /** The team's rules (lib/agent-rules.ts): status, and what the agent may answer, when and where. */
  ...agentRuleFields,
};

export const agentSchema = z.object({
  id: z.uuid(),
  orgId: z.uuid(),
  ...agentFields,
  createdAt: z.string(),
  updatedAt: z.string(),
});

const createBody = z.strictObject(agentFields).partial().required({ name: true, model: true });

const patchBody = z.strictObject(agentFields).partial();

const orgParams = z.object({ orgId: z.uuid() });
const agentParams = z.object({ orgId: z.uuid(), agentId: z.uuid() });
const problems = { 400: problemSchema, 403: problemSchema, 404: problemSchema };

/** Agent configuration: members read, admins (and owners) write. */
export function agentRoutes(agents: AgentService): FastifyPluginAsyncZod {
  return async (app) => {
    app.post('/orgs/:orgId/agents', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: { operationId: 'createAgent', summary: 'Create an agent', params: orgParams, body: createBody, response: { 201: agentSchema, 409: problemSchema, ...problems } },
      handler: async (request, reply) => {
        const agent = await agents.create(request.principal, request.params.orgId, request.body);
        reply.header('location', `/v1/orgs/${agent.orgId}/agents/${agent.id}`);
        return reply.code(201).send(agent);
      },
    });

    app.get('/orgs/:orgId/agents', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: {
        operationId: 'listAgents',
        summary: 'List agents',
        params: orgParams,
        querystring: z.object(pageQuery),
        response: { 200: z.object({ items: z.array(agentSchema), nextCursor: z.string().nullable() }), ...problems },
      },
      handler: async (request) => agents.list(request.principal, request.params.orgId, request.query),
    });

    app.get('/orgs/:orgId/agents/:agentId', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: { operationId: 'getAgent', summary: 'Get an agent', params: agentParams, response: { 200: agentSchema, ...problems } },
      handler: async (request) => agents.get(request.principal, request.params.orgId, request.params.agentId),
    });

    app.patch('/orgs/:orgId/agents/:agentId', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: { operationId: 'updateAgent', summary: 'Change an agent', params: agentParams, body: patchBody, response: { 200: agentSchema, ...problems } },
      handler: async (request) => agents.update(request.principal, request.params.orgId, request.params.agentId, request.body),
    });

    app.delete('/orgs/:orgId/agents/:agentId', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: { operationId: 'deleteAgent', summary: 'Delete an agent and its runs', params: agentParams, response: { 204: z.null(), ...problems } },
      handler: async (request, reply) => {
        await agents.remove(request.principal, request.params.orgId, request.params.agentId);
        return reply.code(204).send(null);
      },
    });
  };
}
