import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { pageQuery } from '../pagination.js';
import { problemSchema } from '../schemas.js';
import type { InviteService } from '../services/invites.js';

const inviteRole = z.enum(['admin', 'member']);
const inviteSchema = z.object({
  id: z.uuid(),
  email: z.string(),
  role: inviteRole,
  status: z.enum(['pending', 'accepted', 'revoked', 'expired']),
  invitedBy: z.uuid().nullable(),
  createdAt: z.string(),
  expiresAt: z.string(),
});
const orgParams = z.object({ orgId: z.uuid() });
const problems = { 400: problemSchema, 403: problemSchema, 404: problemSchema };

/** Invites: admins invite by email (the token is in the 201 answer only); the invitee accepts. */
export function inviteRoutes(invites: InviteService): FastifyPluginAsyncZod {
  return async (app) => {
    app.post('/orgs/:orgId/invites', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'createInvite',
        summary: 'Invite someone by email (admin); the token is shown once',
        params: orgParams,
        body: z.strictObject({
          email: z.email().max(320),
          role: inviteRole.default('member'),
          expiresInHours: z.number().int().min(1).max(24 * 30).optional(),
        }),
        response: { 201: inviteSchema.extend({ token: z.string() }), 409: problemSchema, ...problems },
      },
      handler: async (request, reply) => reply.code(201).send(await invites.createInvite(request.principal, request.params.orgId, request.body)),
    });

    app.get('/orgs/:orgId/invites', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'listInvites',
        summary: 'List invites (admin)',
        params: orgParams,
        querystring: z.object(pageQuery),
        response: { 200: z.object({ items: z.array(inviteSchema), nextCursor: z.string().nullable() }), ...problems },
      },
      handler: async (request) => invites.listInvites(request.principal, request.params.orgId, request.query),
    });

    app.delete('/orgs/:orgId/invites/:inviteId', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'revokeInvite',
        summary: 'Revoke an invite (admin)',
        params: z.object({ orgId: z.uuid(), inviteId: z.uuid() }),
        response: { 204: z.null(), 409: problemSchema, ...problems },
      },
      handler: async (request, reply) => {
        await invites.revokeInvite(request.principal, request.params.orgId, request.params.inviteId);
        return reply.code(204).send(null);
      },
    });

    app.post('/invites/accept', {
      config: { auth: 'bearer', minRole: null },
      schema: {
        operationId: 'acceptInvite',
        summary: 'Accept an invite sent to your email address',
        body: z.strictObject({ token: z.string().min(1).max(200) }),
        response: { 200: z.object({ orgId: z.uuid(), role: inviteRole }), 409: problemSchema, 410: problemSchema, ...problems },
      },
      handler: async (request) => invites.acceptInvite(request.principal, request.body.token),
    });
  };
}
