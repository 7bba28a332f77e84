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
import fastifyCors from '@fastify/cors';
import fastifyHelmet from '@fastify/helmet';
import { createWindowLimiter, defaultRateLimits, registerPublicRateLimits, registerRateLimits, type RateLimitOptions } from './plugins/limits.js';
import { registerOpenApi } from './plugins/openapi.js';
import { registerRouteAccess } from './route-access.js';
import { registerConsole, type ConsoleOptions } from './plugins/console.js';
import { registerStandardResponses } from './plugins/standard-responses.js';
import { registerRequestMetrics } from './plugins/metrics.js';
import { registerErrorReporting } from './plugins/error-reporting.js';
import { healthRoutes, type Lifecycle } from './routes/health.js';
import { runRoutes } from './routes/runs.js';
import { agentRoutes } from './routes/agents.js';
import { knowledgeRoutes, usageRoutes } from './routes/knowledge.js';
import { runControlRoutes } from './routes/runs.js';
import { createAgentService } from './services/agents.js';
import { quotaRoutes } from './routes/quota.js';
import { createQuotaService, type SpendPolicy } from './services/quota.js';
import { DEFAULT_SPEND_SETTINGS } from '../lib/spend.js';
import { DEFAULT_RESOURCE_CAPS, type ResourceCaps } from './services/caps.js';
import { createKnowledgeService } from './services/knowledge.js';
import { RunStreamHub } from './services/run-stream.js';
import { defaultStreamLimits, StreamGuard, type StreamLimits } from './services/stream-guard.js';
import { createUsageService } from './services/usage.js';
import { createRunService } from './services/runs.js';
import { apiKeyRoutes } from './routes/api-keys.js';
import { auditLogRoutes } from './routes/audit-log.js';
import { inviteRoutes } from './routes/invites.js';
import { memberRoutes } from './routes/members.js';
import { orgRoutes } from './routes/orgs.js';
import { createApiKeyAuthenticator, createApiKeyService } from './services/api-keys.js';
import { createAuditService } from './services/audit.js';
import { createInviteService } from './services/invites.js';
import { createMemberService } from './services/members.js';
import { createOrgService } from './services/orgs.js';
import { crmConnectionRoutes } from './routes/crm-connections.js';
import { crmLeadRoutes } from './routes/crm-leads.js';
import { conversationRoutes } from './routes/conversations.js';
import { createConversationService } from './services/conversations.js';
import { orgEventRoutes } from './routes/org-events.js';
import { createLeadService } from './services/crm/leads.js';
import { webhookEndpointRoutes } from './routes/webhook-endpoints.js';
import { llmProviderRoutes } from './routes/llm-provider.js';
import { createLlmProviderService } from './services/llm-provider.js';
import { createOrgEventService } from './services/org-events.js';
import { createWebhookEndpointService } from './services/webhook-endpoints.js';
import { crmPublicRoutes } from './routes/crm-webhooks.js';
import { createCrmService } from './services/crm-connections.js';
import { createRunDispatcher } from './services/run-dispatch.js';
import { createCrmWebhookService } from './services/crm-webhooks.js';
import type { RateGovernor } from '../integrations/crm/governor.js';
import type { CrmSettings } from '../integrations/crm/settings.js';
import type { Keyring } from '../lib/crypto.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
}

export interface AppDeps {
  pool: pg.Pool;
  /** CRM connections, syncs, records and webhooks; absent when ENCRYPTION_KEYS is not configured. */
  crm?: { keyring: Keyring; settings: CrmSettings; syncTaskQueue?: string; governor?: RateGovernor };
  temporal: Client;
  logger: Logger;
  auth: AuthOptions;
  bodyLimitBytes?: number;
  agentRunsTaskQueue?: string;
  /** Task queue of knowledgeIngest workflows (default `knowledge`); tests give each suite its own. */
  knowledgeTaskQueue?: string;
  /** Largest knowledge upload (default 20 MiB). */
  knowledgeMaxUploadBytes?: number;
  /** Conversations end after this long without a message (default 7 days); tests shorten it. */
  conversationIdleTimeoutSeconds?: number;
  /** How long approvals and conversation messages wait for a worker to accept them (default 20 s). */
  updateDeadlineMs?: number;
  /** How long starts, cancels and schedule changes wait for Temporal before answering 503 (default 5 s). */
  temporalDeadlineMs?: number;
  /**
   * Sweep for task runs whose workflow start was never confirmed this often (see
   * services/run-dispatch.ts); off when absent. Tests sweep by hand.
   */
  runDispatchIntervalMs?: number;
  /** Browser origins allowed to call the API (exact matches); none by default. */
  corsAllowedOrigins?: readonly string[];
  rateLimits?: RateLimitOptions;
  /** Caps, lifetime, access re-check and buffering of event streams (api/services/stream-guard.ts). */
  streamLimits?: Partial<StreamLimits>;
  /** Proxies whose X-Forwarded-For names the client (addresses/CIDRs); per-IP budgets key on it. */
  trustProxy?: string;
  /** Shared with the process so SIGTERM can fail readiness at once. */
  lifecycle?: Lifecycle;
  /** Explains a failing Temporal readiness check (lib/temporal.ts `diagnoseTemporalConnection`). */
  diagnoseTemporal?: () => Promise<string>;
  /** The tenant console (web/), served at / on the API's origin. */
  console?: ConsoleOptions;
  /** Where clients reach this API (API_PUBLIC_URL): the `servers` entry of /openapi.json. */
  publicUrl?: string;
  /** The operator's spend ceilings and model catalog (default: lib/spend.ts defaults, any model). */
  spend?: SpendPolicy;
  /** How many orgs a person may own and agents, documents, keys and invites an org may hold. */
  caps?: Partial<ResourceCaps>;
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,100}$/;

export async function buildApp(deps: AppDeps) {
  const app = Fastify({
    // Typed as Fastify's logger interface so plugins written against plain FastifyInstance fit.
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: deps.bodyLimitBytes ?? 1024 * 1024,
    ...(deps.trustProxy !== undefined ? { trustProxy: deps.trustProxy } : {}),
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // Accept a caller's request id for correlation when it is harmless, else mint one.
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
  }).withTypeProvider<ZodTypeProvider>();

  // First, so it hears of every route: each declares who may call it (api/route-access.ts).
  registerRouteAccess(app);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  registerRequestMetrics(app);
  registerErrorReporting(app);

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

  // A JSON API renders nothing, so no CSP of its own; the docs UI sets its own CSP.
  await app.register(fastifyHelmet, { contentSecurityPolicy: false, crossOriginResourcePolicy: { policy: 'same-site' } });
  await app.register(fastifyCors, {
    origin: deps.corsAllowedOrigins && deps.corsAllowedOrigins.length > 0 ? [...deps.corsAllowedOrigins] : false,
    methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: ['authorization', 'content-type', 'idempotency-key', 'last-event-id', 'x-request-id'],
    exposedHeaders: ['location', 'retry-after', 'x-request-id'],
    maxAge: 600,
  });
  registerStandardResponses(app);
  await registerOpenApi(app, deps.publicUrl ? { publicUrl: deps.publicUrl } : {});
  await app.register(
    healthRoutes({
      pool: deps.pool,
      temporal: deps.temporal,
      ...(deps.lifecycle ? { lifecycle: deps.lifecycle } : {}),
      ...(deps.diagnoseTemporal ? { diagnoseTemporal: deps.diagnoseTemporal } : {}),
    }),
  );
  if (deps.console) registerConsole(app, deps.console);

  const authenticate = createAuthenticator(deps.auth, { authenticateApiKey: createApiKeyAuthenticator(deps.pool) });
  const dispatcher = createRunDispatcher({
    pool: deps.pool,
    temporal: deps.temporal,
    ...(deps.agentRunsTaskQueue ? { taskQueue: deps.agentRunsTaskQueue } : {}),
    ...(deps.temporalDeadlineMs ? { deadlineMs: deps.temporalDeadlineMs } : {}),
  });
  if (deps.runDispatchIntervalMs) {
    const stopSweeping = dispatcher.sweepEvery(deps.runDispatchIntervalMs, deps.logger);
    app.addHook('onClose', stopSweeping);
  }
  const runs = createRunService({
    pool: deps.pool,
    temporal: deps.temporal,
    dispatcher,
    ...(deps.temporalDeadlineMs ? { temporalDeadlineMs: deps.temporalDeadlineMs } : {}),
    ...(deps.agentRunsTaskQueue ? { taskQueue: deps.agentRunsTaskQueue } : {}),
    ...(deps.conversationIdleTimeoutSeconds ? { conversationIdleTimeoutSeconds: deps.conversationIdleTimeoutSeconds } : {}),
    ...(deps.updateDeadlineMs ? { updateDeadlineMs: deps.updateDeadlineMs } : {}),
  });
  const crmService = deps.crm
    ? createCrmService({
        pool: deps.pool,
        temporal: deps.temporal,
        keyring: deps.crm.keyring,
        settings: deps.crm.settings,
        ...(deps.crm.syncTaskQueue ? { syncTaskQueue: deps.crm.syncTaskQueue } : {}),
        ...(deps.temporalDeadlineMs ? { temporalDeadlineMs: deps.temporalDeadlineMs } : {}),
      })
    : undefined;
  const rateLimits = deps.rateLimits ?? defaultRateLimits;
  // One set of windows for both scopes, so an IP's failures count the same wherever they happen.
  const limiter = createWindowLimiter(rateLimits.windowMs, rateLimits.now);
  await app.register(
    async (v1) => {
      // Every /v1 route requires a verified principal; authentication runs before body parsing
      // so an anonymous caller cannot make us parse or validate anything.
      v1.decorateRequest('principal', null as never);
      const { beforeAuthentication } = registerRateLimits(v1, { ...rateLimits, pool: deps.pool, limiter });
      v1.addHook('onRequest', async (request, reply) => {
        await beforeAuthentication(request, reply);
        request.principal = await authenticate(request);
      });
      await v1.register(runRoutes(runs));
      const spend: SpendPolicy = deps.spend ?? { settings: DEFAULT_SPEND_SETTINGS };
      const caps: ResourceCaps = { ...DEFAULT_RESOURCE_CAPS, ...deps.caps };
      await v1.register(agentRoutes(createAgentService({ pool: deps.pool, spend, caps })));
      await v1.register(quotaRoutes(createQuotaService({ pool: deps.pool, policy: spend })));
      const runStreams = new RunStreamHub(deps.pool);
      // preClose: open event streams would otherwise keep the server from closing.
      v1.addHook('preClose', () => runStreams.close());
      const streamGuard = new StreamGuard({ ...defaultStreamLimits, ...deps.streamLimits });
      await v1.register(runControlRoutes(runs, { hub: runStreams, guard: streamGuard, reauthenticate: authenticate }));
      await v1.register(conversationRoutes(createConversationService({ pool: deps.pool }), { hub: runStreams, guard: streamGuard, reauthenticate: authenticate }));
      await v1.register(orgEventRoutes(createOrgEventService({ pool: deps.pool }), { hub: runStreams, guard: streamGuard, reauthenticate: authenticate }));
      await v1.register(knowledgeRoutes(createKnowledgeService({ pool: deps.pool, temporal: deps.temporal, caps, ...(deps.knowledgeTaskQueue ? { taskQueue: deps.knowledgeTaskQueue } : {}), ...(deps.temporalDeadlineMs ? { temporalDeadlineMs: deps.temporalDeadlineMs } : {}) }), deps.knowledgeMaxUploadBytes ? { maxUploadBytes: deps.knowledgeMaxUploadBytes } : {}));
      await v1.register(usageRoutes(createUsageService({ pool: deps.pool })));
      await v1.register(orgRoutes(createOrgService({ pool: deps.pool, caps, temporal: deps.temporal, logger: deps.logger, ...(deps.temporalDeadlineMs ? { temporalDeadlineMs: deps.temporalDeadlineMs } : {}) })));
      await v1.register(memberRoutes(createMemberService({ pool: deps.pool })));
      await v1.register(inviteRoutes(createInviteService({ pool: deps.pool, caps })));
      await v1.register(apiKeyRoutes(createApiKeyService({ pool: deps.pool, caps })));
      await v1.register(auditLogRoutes(createAuditService({ pool: deps.pool })));
      if (crmService) {
        await v1.register(crmConnectionRoutes(crmService));
        await v1.register(crmLeadRoutes(createLeadService({ pool: deps.pool })));
      }
      // Endpoint secrets are encrypted with the same keyring as CRM credentials (ENCRYPTION_KEYS).
      if (deps.crm) {
        await v1.register(
          webhookEndpointRoutes(createWebhookEndpointService({ pool: deps.pool, keyring: deps.crm.keyring, caps, ...(deps.crm.settings.ssrf ? { ssrf: deps.crm.settings.ssrf } : {}) })),
        );
        // So are the orgs' own LLM keys; their base URLs meet the same SSRF policy.
        await v1.register(llmProviderRoutes(createLlmProviderService({ pool: deps.pool, keyring: deps.crm.keyring, ...(deps.crm.settings.ssrf ? { ssrf: deps.crm.settings.ssrf } : {}) })));
      }
    },
    { prefix: '/v1' },
  );
  if (crmService && deps.crm) {
    const webhooks = createCrmWebhookService({
      pool: deps.pool,
      settings: deps.crm.settings,
      temporal: deps.temporal,
      logger: deps.logger,
      ...(deps.crm.syncTaskQueue ? { intakeTaskQueue: deps.crm.syncTaskQueue } : {}),
    });
    await app.register(async (publicScope) => {
      registerPublicRateLimits(publicScope, { ...rateLimits, limiter });
      await publicScope.register(crmPublicRoutes({ crm: crmService, webhooks, ...(deps.bodyLimitBytes ? { bodyLimitBytes: deps.bodyLimitBytes } : {}) }));
    }, { prefix: '/v1' });
  }

  return app;
}

export type App = Awaited<ReturnType<typeof buildApp>>;
