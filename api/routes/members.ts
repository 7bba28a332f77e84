import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { pageQuery } from '../pagination.js';
import { problemSchema } from '../schemas.js';
import type { MemberService } from '../services/members.js';
import { orgRoleSchema } from './orgs.js';

/** `email` comes from the sign-in token that created the membership; null for memberships added otherwise. */
const memberSchema = z.object({ userId: z.uuid(), email: z.string().nullable(), role: orgRoleSchema, createdAt: z.string() });
const orgParams = z.object({ orgId: z.uuid() });
const memberParams = z.object({ orgId: z.uuid(), userId: z.uuid() });
const problems = { 400: problemSchema, 403: problemSchema, 404: problemSchema };

/** Members read the member list; admins change and remove admins and members; owners anyone; everyone may leave. */
export function memberRoutes(members: MemberService): FastifyPluginAsyncZod {
  return async (app) => {
    app.get('/orgs/:orgId/members', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: {
        operationId: 'listMembers',
        summary: 'List members',
        params: orgParams,
        querystring: z.object(pageQuery),
        response: { 200: z.object({ items: z.array(memberSchema), nextCursor: z.string().nullable() }), ...problems },
      },
      handler: async (request) => members.listMembers(request.principal, request.params.orgId, request.query),
    });

    app.get('/orgs/:orgId/members/:userId', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: { operationId: 'getMember', summary: 'Get a member', params: memberParams, response: { 200: memberSchema, ...problems } },
      handler: async (request) => members.getMember(request.principal, request.params.orgId, request.params.userId),
    });

    app.patch('/orgs/:orgId/members/:userId', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'changeMemberRole',
        summary: "Change a member's role (admin; owner for anything involving owners)",
        params: memberParams,
        body: z.strictObject({ role: orgRoleSchema }),
        response: { 200: memberSchema, 409: problemSchema, ...problems },
      },
      handler: async (request) => members.changeRole(request.principal, request.params.orgId, request.params.userId, request.body.role),
    });

    app.delete('/orgs/:orgId/members/:userId', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'removeMember',
        summary: 'Remove a member (admin; owner for owners), or leave (your own user id)',
        params: memberParams,
        response: { 204: z.null(), 409: problemSchema, ...problems },
      },
      handler: async (request, reply) => {
        await members.removeMember(request.principal, request.params.orgId, request.params.userId);
        return reply.code(204).send(null);
      },
    });
  };
}
