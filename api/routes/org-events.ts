import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemSchema } from '../schemas.js';
import type { OrgEventService } from '../services/org-events.js';
import type { RunStreamDeps } from './runs.js';
import { superviseStream } from '../services/stream-guard.js';

const SSE_KEEPALIVE_MS = 15_000;

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
        let lastSeq = Number(request.headers['last-event-id'] ?? 0);
        let principal = request.principal;
        const release = streams.guard.admit(principal.kind === 'api_key' ? `key:${principal.keyId}` : principal.kind === 'user' ? `user:${principal.userId}` : principal.kind, orgId);

        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, {
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-cache, no-transform',
          connection: 'keep-alive',
          'x-accel-buffering': 'no',
          'x-request-id': request.id,
        });

        let draining: Promise<void> = Promise.resolve();
        let unsubscribe: () => void = () => {};
        const stream = superviseStream(
          res,
          streams.guard.limits,
          async () => {
            principal = await streams.reauthenticate(request);
            await events.assertCanFollow(principal, orgId);
          },
          () => {
            clearInterval(keepalive);
            unsubscribe();
            release();
          },
        );
        const keepalive = setInterval(() => stream.write(': keepalive\n\n'), SSE_KEEPALIVE_MS);
        stream.write(': stream of org events\n\n');

        // Serialized so each event goes out once and in order, however notifications interleave.
        const drain = () => {
          draining = draining
            .then(async () => {
              while (!stream.ended) {
                const batch = await events.eventsAfter(principal, orgId, lastSeq);
                for (const event of batch) {
                  if (stream.ended) return;
                  stream.write(`id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
                  lastSeq = event.seq;
                }
                if (batch.length < 500) break;
              }
            })
            .catch(() => stream.end());
          return draining;
        };

        try {
          unsubscribe = await streams.hub.subscribeOrg(orgId, {
            onEvent: (seq) => {
              if (seq > lastSeq) void drain();
            },
            onClose: () => stream.end(),
          });
        } catch {
          // Shutting down, or Postgres is unreachable: the client reconnects with Last-Event-ID.
          stream.end();
          return;
        }
        if (stream.ended) unsubscribe();
        await drain();
      },
    });
  };
}
