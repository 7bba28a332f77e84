import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { RunService } from '../services/runs.js';
import { serveEventStream, type RunStreamDeps } from '../services/event-stream.js';
import { pageQuery } from '../pagination.js';
import { problemSchema, runSchema, runStatusSchema } from '../schemas.js';

const MAX_INPUT_CHARS = 100_000;

export function runRoutes(runs: RunService): FastifyPluginAsyncZod {
  return async (app) => {
    app.post('/orgs/:orgId/agents/:agentId/runs', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: {
        operationId: 'startRun',
        summary: 'Start an agent run',
        params: z.object({ orgId: z.uuid(), agentId: z.uuid() }),
        headers: z.looseObject({
          'idempotency-key': z
            .string()
            .min(1)
            .max(200)
            .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces')
            .optional(),
        }),
        body: z.strictObject({ input: z.string().min(1).max(MAX_INPUT_CHARS) }),
        response: {
          200: z.object({ id: z.uuid(), status: runSchema.shape.status, workflowId: z.string() }),
          201: z.object({ id: z.uuid(), status: runSchema.shape.status, workflowId: z.string() }),
          400: problemSchema,
          404: problemSchema,
          409: problemSchema,
        },
      },
      handler: async (request, reply) => {
        const key = request.headers['idempotency-key'];
        const { run, created } = await runs.startRun(request.principal, {
          orgId: request.params.orgId,
          agentId: request.params.agentId,
          input: request.body.input,
          ...(key ? { idempotencyKey: key } : {}),
        });
        if (created) reply.header('location', `/v1/orgs/${run.orgId}/runs/${run.id}`);
        return reply.code(created ? 201 : 200).send({ id: run.id, status: run.status, workflowId: run.workflowId });
      },
    });

    app.get('/orgs/:orgId/runs/:runId', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: {
        operationId: 'getRun',
        summary: 'Get an agent run',
        params: z.object({ orgId: z.uuid(), runId: z.uuid() }),
        response: { 200: runSchema, 404: problemSchema },
      },
      handler: async (request) => runs.getRun(request.principal, request.params.orgId, request.params.runId),
    });
  };
}

const runParams = z.object({ orgId: z.uuid(), runId: z.uuid() });
const TERMINAL_EVENTS = new Set(['run.completed', 'run.failed', 'run.cancelled']);

/** Listing, cancelling, approvals and the live event stream of runs. */
export function runControlRoutes(runs: RunService, streams: RunStreamDeps): FastifyPluginAsyncZod {
  const hub = streams.hub;
  return async (app) => {
    app.post('/orgs/:orgId/agents/:agentId/conversations/:threadKey/messages', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: {
        operationId: 'sendConversationMessage',
        summary: "Send a message to the agent's conversation (started when absent)",
        params: z.object({ orgId: z.uuid(), agentId: z.uuid(), threadKey: z.string().min(1).max(200).regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces') }),
        body: z.strictObject({ content: z.string().min(1).max(100_000) }),
        response: {
          202: z.object({ runId: z.uuid(), workflowId: z.string(), messageId: z.uuid(), queued: z.boolean(), interrupted: z.boolean() }),
          400: problemSchema,
          403: problemSchema,
          404: problemSchema,
          409: problemSchema,
        },
      },
      handler: async (request, reply) => {
        const accepted = await runs.postMessage(request.principal, { ...request.params, content: request.body.content });
        return reply.code(202).send(accepted);
      },
    });

    app.get('/orgs/:orgId/runs', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: {
        operationId: 'listRuns',
        summary: 'List agent runs, newest first',
        params: z.object({ orgId: z.uuid() }),
        querystring: z.object({
          agentId: z.uuid().optional(),
          status: runStatusSchema.optional(),
          /** `true`: only conversations flagged for a person (see `attention`). */
          needsAttention: z.enum(['true', 'false']).transform((v) => v === 'true').optional(),
          ...pageQuery,
        }),
        response: { 200: z.object({ items: z.array(runSchema), nextCursor: z.string().nullable() }), 400: problemSchema, 404: problemSchema },
      },
      handler: async (request) => runs.listRuns(request.principal, request.params.orgId, request.query),
    });

    app.delete('/orgs/:orgId/runs/:runId/attention', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: {
        operationId: 'acknowledgeRunAttention',
        summary: 'Acknowledge a conversation that needed a person (members): clears its `attention` flag',
        params: runParams,
        response: { 200: runSchema, 404: problemSchema },
      },
      handler: async (request) => runs.acknowledgeAttention(request.principal, request.params.orgId, request.params.runId),
    });

    app.post('/orgs/:orgId/runs/:runId/cancel', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: {
        operationId: 'cancelRun',
        summary: 'Cancel a run: its in-flight step is aborted and it ends cancelled',
        params: runParams,
        response: { 202: z.object({ id: z.uuid(), status: runStatusSchema, cancelRequested: z.literal(true) }), 404: problemSchema, 409: problemSchema },
      },
      handler: async (request, reply) => {
        const run = await runs.cancelRun(request.principal, request.params.orgId, request.params.runId);
        return reply.code(202).send({ id: run.id, status: run.status, cancelRequested: true as const });
      },
    });

    app.post('/orgs/:orgId/runs/:runId/follow-up/resume', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: {
        operationId: 'resumeFollowUp',
        summary: 'End a follow-up wait (schedule_follow_up) now: the agent resumes at once',
        params: runParams,
        response: { 202: z.object({ id: z.uuid(), resumeRequested: z.literal(true) }), 404: problemSchema, 409: problemSchema, 503: problemSchema },
      },
      handler: async (request, reply) => {
        const run = await runs.resumeFollowUp(request.principal, request.params.orgId, request.params.runId);
        return reply.code(202).send({ id: run.id, resumeRequested: true as const });
      },
    });

    app.post('/orgs/:orgId/runs/:runId/handoff/resume', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: {
        operationId: 'resumeHandoff',
        summary: 'Give a handed-off conversation back to the agent now (members)',
        params: runParams,
        response: { 200: runSchema, 404: problemSchema, 409: problemSchema, 503: problemSchema },
      },
      handler: async (request) => runs.resumeHandoff(request.principal, request.params.orgId, request.params.runId),
    });

    app.post('/orgs/:orgId/runs/:runId/approvals/:approvalId', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: {
        operationId: 'decideApproval',
        summary: 'Approve or reject a pending tool call, or answer a question the agent asked',
        params: runParams.extend({ approvalId: z.uuid() }),
        body: z.strictObject({ decision: z.enum(['approve', 'reject']), comment: z.string().min(1).max(10_000).optional() }),
        response: {
          200: z.object({ approvalId: z.uuid(), status: z.string() }),
          400: problemSchema,
          403: problemSchema,
          404: problemSchema,
          409: problemSchema,
          503: problemSchema,
        },
      },
      handler: async (request) =>
        runs.decideApproval(request.principal, request.params.orgId, request.params.runId, request.params.approvalId, request.body),
    });

    app.get('/orgs/:orgId/runs/:runId/events', {
      config: { auth: 'bearer', minRole: 'member', stream: true },
      schema: {
        operationId: 'streamRunEvents',
        summary: 'Server-Sent Events: durable run events (id = seq, resumable with Last-Event-ID) and live token deltas',
        params: runParams,
        headers: z.looseObject({ 'last-event-id': z.string().regex(/^\d{1,9}$/).optional() }),
        response: { 404: problemSchema },
      },
      handler: async (request, reply) => {
        const { orgId, runId } = request.params;
        await runs.getRun(request.principal, orgId, runId);
        await serveEventStream(request, reply, streams, {
          orgId,
          banner: 'stream of run events',
          recheck: async (principal) => void (await runs.getRun(principal, orgId, runId)),
          eventsAfter: (principal, lastSeq) => runs.eventsAfter(principal, orgId, runId, lastSeq),
          isLast: (event) => TERMINAL_EVENTS.has(event.type),
          subscribe: (feed) =>
            hub.subscribe(runId, {
              onEvent: feed.onEvent,
              onClose: feed.onClose,
              // Queued behind any page of durable events being sent: events committed before this
              // delta (Postgres notifies in commit order) go out first, so a client never sees a
              // step's tokens before the events that precede it. Deltas of a step already recorded are stale.
              onDelta: (delta) =>
                feed.after((send, lastSeq) => {
                  if (delta.seq > lastSeq) send(`event: delta\ndata: ${JSON.stringify({ seq: delta.seq, text: delta.text })}\n\n`);
                }),
            }),
        });
      },
    });
  };
}
