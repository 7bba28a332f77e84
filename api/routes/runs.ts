import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { RunService } from '../services/runs.js';
import { problemSchema, runSchema } from '../schemas.js';

const MAX_INPUT_CHARS = 100_000;

export function runRoutes(runs: RunService): FastifyPluginAsyncZod {
  return async (app) => {
    app.post('/orgs/:orgId/agents/:agentId/runs', {
      schema: {
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
      schema: {
        summary: 'Get an agent run',
        params: z.object({ orgId: z.uuid(), runId: z.uuid() }),
        response: { 200: runSchema, 404: problemSchema },
      },
      handler: async (request) => runs.getRun(request.principal, request.params.orgId, request.params.runId),
    });
  };
}
