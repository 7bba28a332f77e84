import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { pageQuery } from '../pagination.js';
import { problemSchema, runSchema, runStatusSchema } from '../schemas.js';
import { conversationFilterSchema, type ConversationService } from '../services/conversations.js';
import { serveEventStream, type RunStreamDeps } from '../services/event-stream.js';

const conversationSchema = z.object({
  /** The conversation is a run: its timeline, stream, handoff resume and attention live under /runs/{runId}. */
  runId: z.uuid(),
  agentId: z.uuid(),
  threadKey: z.string(),
  status: runStatusSchema,
  /** Set when the thread is a CRM lead's (`crm:<connectionId>:<leadId>`): its memory is at …/crm/connections/{connectionId}/leads/{leadId}/memory. */
  lead: z.object({ connectionId: z.uuid(), leadId: z.string() }).nullable(),
  /** The latest message: from the lead (CRM), staff (a member in the console) or the agent; the first 200 characters. */
  lastMessage: z.object({ from: z.enum(['lead', 'staff', 'agent']), preview: z.string(), at: z.string() }).nullable(),
  handoff: runSchema.shape.handoff,
  attention: runSchema.shape.attention,
  /** The list's order: the latest message (lead, staff, agent), handoff starting or flag raised; else when the conversation started. */
  lastActivityAt: z.string(),
  createdAt: z.string(),
});

/** Conversations: the runs with a thread key, listed the way a sales team works through them. */
export function conversationRoutes(conversations: ConversationService, streams: RunStreamDeps): FastifyPluginAsyncZod {
  return async (app) => {
    app.get('/orgs/:orgId/conversations', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: {
        operationId: 'listConversations',
        summary:
          'List conversations (lead and chat threads) by latest activity, newest first, with their last message and whether they need a person; a walk serves each conversation at most once',
        params: z.object({ orgId: z.uuid() }),
        querystring: z.object({
          agentId: z.uuid().optional(),
          /** `needs_person`: handed off to people or flagged for attention. */
          status: conversationFilterSchema.optional(),
          ...pageQuery,
        }),
        response: { 200: z.object({ items: z.array(conversationSchema), nextCursor: z.string().nullable() }), 400: problemSchema, 404: problemSchema },
      },
      handler: async (request) => conversations.listConversations(request.principal, request.params.orgId, request.query),
    });

    // The list pushed live: a hint per change, so a console re-reads the first page instead of
    // polling. No event id and nothing to replay: a client that (re)connects reads the first
    // page once, then on each hint. Same rules as every stream (stream-guard.ts).
    app.get('/orgs/:orgId/conversations/events', {
      config: { auth: 'bearer', minRole: 'member', stream: true },
      schema: {
        operationId: 'streamConversationActivity',
        summary:
          'Server-Sent Events: `activity` with `{ runId }` when a conversation starts or changes as the list shows it (activity, status, handoff, flag); read the first page again (members)',
        params: z.object({ orgId: z.uuid() }),
        response: { 404: problemSchema },
      },
      handler: async (request, reply) => {
        const { orgId } = request.params;
        await conversations.assertCanFollow(request.principal, orgId);
        await serveEventStream(request, reply, streams, {
          orgId,
          banner: 'stream of conversation activity',
          recheck: (principal) => conversations.assertCanFollow(principal, orgId),
          // Hints only: no durable event to send or resume from.
          eventsAfter: async () => [],
          subscribe: (feed) =>
            streams.hub.subscribeConversations(orgId, {
              onClose: feed.onClose,
              onActivity: (runId) => feed.after((send) => send(`event: activity\ndata: ${JSON.stringify({ runId })}\n\n`)),
            }),
        });
      },
    });

    app.get('/orgs/:orgId/conversations/:runId', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: {
        operationId: 'getConversation',
        summary: 'Get a conversation: its thread, lead, last message, handoff and attention',
        params: z.object({ orgId: z.uuid(), runId: z.uuid() }),
        response: { 200: conversationSchema, 404: problemSchema },
      },
      handler: async (request) => conversations.getConversation(request.principal, request.params.orgId, request.params.runId),
    });
  };
}
