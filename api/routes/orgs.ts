import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { pageQuery } from '../pagination.js';
import { problemSchema } from '../schemas.js';
import type { OrgService } from '../services/orgs.js';

export const orgRoleSchema = z.enum(['owner', 'admin', 'member']);

const orgSchema = z.object({ id: z.uuid(), name: z.string(), role: orgRoleSchema, createdAt: z.string() });
const orgBody = z.strictObject({ name: z.string().trim().min(1).max(200) });
const orgParams = z.object({ orgId: z.uuid() });
const problems = { 400: problemSchema, 403: problemSchema, 404: problemSchema };

/** Organizations: anyone signed in founds one (and owns it); admins rename; owners delete. */
export function orgRoutes(orgs: OrgService): FastifyPluginAsyncZod {
  return async (app) => {
    app.post('/orgs', {
      config: { auth: 'bearer', minRole: null },
      schema: { operationId: 'createOrg', summary: 'Create an organization (the caller becomes its owner)', body: orgBody, response: { 201: orgSchema, 409: problemSchema, ...problems } },
      handler: async (request, reply) => {
        const org = await orgs.createOrg(request.principal, request.body);
        reply.header('location', `/v1/orgs/${org.id}`);
        return reply.code(201).send(org);
      },
    });

    app.get('/orgs', {
      config: { auth: 'bearer', minRole: null },
      schema: {
        operationId: 'listOrgs',
        summary: "List the caller's organizations",
        querystring: z.object(pageQuery),
        response: { 200: z.object({ items: z.array(orgSchema), nextCursor: z.string().nullable() }), ...problems },
      },
      handler: async (request) => orgs.listOrgs(request.principal, request.query),
    });

    app.get('/orgs/:orgId', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: { operationId: 'getOrg', summary: 'Get an organization', params: orgParams, response: { 200: orgSchema, ...problems } },
      handler: async (request) => orgs.getOrg(request.principal, request.params.orgId),
    });

    app.patch('/orgs/:orgId', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: { operationId: 'renameOrg', summary: 'Rename an organization (admin)', params: orgParams, body: orgBody, response: { 200: orgSchema, ...problems } },
      handler: async (request) => orgs.renameOrg(request.principal, request.params.orgId, request.body),
    });

    app.delete('/orgs/:orgId', {
      config: { auth: 'bearer', minRole: 'owner' },
      schema: { operationId: 'deleteOrg', summary: 'Delete an organization and everything it owns (owner)', params: orgParams, response: { 204: z.null(), ...problems } },
      handler: async (request, reply) => {
        await orgs.deleteOrg(request.principal, request.params.orgId);
        return reply.code(204).send(null);
      },
    });
  };
}
