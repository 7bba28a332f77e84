import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { RunService } from '../services/runs.js';
import type { FastifyRequest } from 'fastify';
import type { RequestPrincipal } from '../auth.js';
import type { RunStreamHub } from '../services/run-stream.js';
import { superviseStream, type StreamGuard } from '../services/stream-guard.js';
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
const SSE_KEEPALIVE_MS = 15_000;

/** Listing, cancelling, approvals and the live event stream of runs. */
export interface RunStreamDeps {
  hub: RunStreamHub;
  guard: StreamGuard;
  /** The request's credential verified again, as at the start of the request (a revoked key or an expired token throws). */
  reauthenticate(request: FastifyRequest): Promise<RequestPrincipal>;
}

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

        let finished = false;
        let draining: Promise<void> = Promise.resolve();
        let unsubscribe: () => void = () => {};
        // Access is re-checked as it was at the start: the credential again (a revoked key or an
        // expired token fails), then the run through RLS (a removed member or a deleted org fails).
        const stream = superviseStream(
          res,
          streams.guard.limits,
          async () => {
            principal = await streams.reauthenticate(request);
            await runs.getRun(principal, orgId, runId);
          },
          () => {
            clearInterval(keepalive);
            unsubscribe();
            release();
          },
        );
        const keepalive = setInterval(() => stream.write(': keepalive\n\n'), SSE_KEEPALIVE_MS);
        stream.write(': stream of run events\n\n');

        // Serialized so durable events go out once each and in order, however notifications interleave.
        const drain = () => {
          draining = draining.then(async () => {
            while (!stream.ended && !finished) {
              const events = await runs.eventsAfter(principal, orgId, runId, lastSeq);
              for (const event of events) {
                if (stream.ended) return;
                stream.write(`id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
                lastSeq = event.seq;
                if (TERMINAL_EVENTS.has(event.type)) finished = true;
              }
              if (events.length < 500) break;
            }
            if (finished) stream.end();
          }).catch(() => stream.end());
          return draining;
        };

        try {
          unsubscribe = await hub.subscribe(runId, {
            onEvent: (seq) => {
              if (seq > lastSeq) void drain();
            },
            onDelta: (delta) => {
              // Queued behind any drain in progress: durable events committed before this delta
              // (Postgres notifies in commit order) go out first, so a client never sees a step's
              // tokens before the events that precede it. Deltas of a step already recorded are stale.
              draining = draining.then(() => {
                if (delta.seq > lastSeq) stream.write(`event: delta\ndata: ${JSON.stringify({ seq: delta.seq, text: delta.text })}\n\n`);
              });
            },
            onClose: () => stream.end(),
          });
        } catch {
          // Shutting down, or Postgres is unreachable: the client reconnects with Last-Event-ID.
          stream.end();
          return;
        }
        // The client may have gone while we subscribed.
        if (stream.ended) unsubscribe();
        await drain();
      },
    });
  };
}
