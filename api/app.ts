import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import Fastify, { type FastifyBaseLogger, type FastifyError } from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type pg from 'pg';
import type { Logger } from '../lib/logger.js';
import type { Principal } from '../lib/principal.js';
import { createAuthenticator, type AuthOptions } from './auth.js';
import { ProblemError, toProblem, type Problem, type ProblemKind } from './problems.js';
import { registerOpenApi } from './plugins/openapi.js';
import { healthRoutes } from './routes/health.js';
import { runRoutes } from './routes/runs.js';
import { agentRoutes } from './routes/agents.js';
import { createAgentService } from './services/agents.js';
import { createRunService } from './services/runs.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
}

export interface AppDeps {
  pool: pg.Pool;
  temporal: Client;
  logger: Logger;
  auth: AuthOptions;
  bodyLimitBytes?: number;
  agentRunsTaskQueue?: string;
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,100}$/;

export async function buildApp(deps: AppDeps) {
  const app = Fastify({
    // Typed as Fastify's logger interface so plugins written against plain FastifyInstance fit.
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: deps.bodyLimitBytes ?? 1024 * 1024,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // Accept a caller's request id for correlation when it is harmless, else mint one.
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
  }).withTypeProvider<ZodTypeProvider>();

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });

  const sendProblem = (reply: { code: (n: number) => unknown; type: (t: string) => unknown; send: (b: unknown) => unknown }, problem: Problem) => {
    reply.code(problem.status);
    reply.type('application/problem+json');
    return reply.send(problem);
  };

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const base = { instance: request.url, requestId: request.id };
    if (error instanceof ProblemError) {
      return sendProblem(reply, toProblem(error.kind, error.detail, { ...base, ...(error.errors ? { errors: error.errors } : {}) }));
    }
    if (hasZodFastifySchemaValidationErrors(error)) {
      const errors = error.validation.map((v) => ({
        path: [error.validationContext, ...String(v.instancePath).split('/').filter(Boolean)].join('.'),
        message: v.message ?? 'is invalid',
      }));
      const detail = errors.map((e) => `${e.path}: ${e.message}`).join('; ');
      return sendProblem(reply, toProblem('validation-error', detail, { ...base, errors }));
    }
    const known: Record<string, [ProblemKind, string]> = {
      FST_ERR_CTP_BODY_TOO_LARGE: ['payload-too-large', 'The request body is larger than the server accepts.'],
      FST_ERR_CTP_INVALID_MEDIA_TYPE: ['unsupported-media-type', 'Send the body as application/json.'],
      FST_ERR_CTP_INVALID_JSON_BODY: ['malformed-body', 'The request body could not be parsed as JSON.'],
      FST_ERR_CTP_EMPTY_JSON_BODY: ['malformed-body', 'The request body is empty; send a JSON object.'],
    };
    const mapped = error.code ? known[error.code] : undefined;
    if (mapped) return sendProblem(reply, toProblem(mapped[0], mapped[1], base));
    if (error.statusCode === 400) {
      // JSON syntax errors and prototype-poisoning rejections land here.
      return sendProblem(reply, toProblem('malformed-body', 'The request body could not be parsed as JSON.', base));
    }
    request.log.error({ err: error }, 'request failed');
    return sendProblem(reply, toProblem('internal-error', 'Something went wrong on our side; retry later or quote the request id.', base));
  });

  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, toProblem('not-found', `No route ${request.method} ${request.url.split('?')[0]}.`, { requestId: request.id })),
  );

  await registerOpenApi(app);
  await app.register(healthRoutes({ pool: deps.pool, temporal: deps.temporal }));

  const authenticate = createAuthenticator(deps.auth);
  const runs = createRunService({
    pool: deps.pool,
    temporal: deps.temporal,
    ...(deps.agentRunsTaskQueue ? { taskQueue: deps.agentRunsTaskQueue } : {}),
  });
  await app.register(
    async (v1) => {
      // Every /v1 route requires a verified principal; authentication runs before body parsing
      // so an anonymous caller cannot make us parse or validate anything.
      v1.decorateRequest('principal', null as never);
      v1.addHook('onRequest', async (request) => {
        request.principal = await authenticate(request);
      });
      await v1.register(runRoutes(runs));
      await v1.register(agentRoutes(createAgentService({ pool: deps.pool })));
    },
    { prefix: '/v1' },
  );

  return app;
}

export type App = Awaited<ReturnType<typeof buildApp>>;
