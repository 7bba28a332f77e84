import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemSchema } from '../schemas.js';
import type { OrgEventService } from '../services/org-events.js';
import { serveEventStream, type RunStreamDeps } from '../services/event-stream.js';

/**
 * The org-wide live feed for consoles: the same events the org's webhook endpoints receive
 * (approval.requested, handoff.requested, run.failed, reply.failed) as Server-Sent Events,
 * `id` = the org's event seq, resumable with Last-Event-ID. The stream lives by the same rules as
 * run streams (stream-guard.ts: caps, lifetime, access re-checked, slow readers dropped).
 */
export function orgEventRoutes(events: OrgEventService, streams: RunStreamDeps): FastifyPluginAsyncZod {
  return async (app) => {
    app.get('/orgs/:orgId/events', {
      config: { auth: 'bearer', minRole: 'member', stream: true },
      schema: {
        operationId: 'streamOrgEvents',
        summary: 'Server-Sent Events: the org events (id = seq, resumable with Last-Event-ID), live (members)',
        params: z.object({ orgId: z.uuid() }),
        headers: z.looseObject({ 'last-event-id': z.string().regex(/^\d{1,15}$/).optional() }),
        response: { 404: problemSchema },
      },
      handler: async (request, reply) => {
        const { orgId } = request.params;
        await events.assertCanFollow(request.principal, orgId);
        await serveEventStream(request, reply, streams, {
          orgId,
          banner: 'stream of org events',
          recheck: (principal) => events.assertCanFollow(principal, orgId),
          eventsAfter: (principal, lastSeq) => events.eventsAfter(principal, orgId, lastSeq),
          subscribe: (feed) => streams.hub.subscribeOrg(orgId, feed),
        });
      },
    });
  };
}
