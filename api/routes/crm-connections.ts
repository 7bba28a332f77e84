import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { pageQuery } from '../pagination.js';
import { problemSchema } from '../schemas.js';
import { messagingSettingsSchema } from '../../integrations/crm/messaging/settings.js';
import { OAUTH_STATE_TTL_MINUTES, scheduleInputSchema, type CrmService } from '../services/crm-connections.js';
import { bindingCookie, bindingFromCookies, newBinding } from '../services/crm/oauth-binding.js';

const provider = z.enum(['kommo', 'hubspot']);
const connectionSchema = z.object({
  id: z.uuid(),
  orgId: z.uuid(),
  provider,
  name: z.string(),
  authKind: z.enum(['oauth', 'token']),
  status: z.enum(['pending', 'active', 'error', 'revoked']),
  accountId: z.string().nullable(),
  lastError: z.object({ type: z.string(), message: z.string() }).nullable(),
  schedule: z.record(z.string(), z.unknown()).nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
const syncRunSchema = z.object({
  id: z.uuid(),
  mode: z.enum(['incremental', 'full']),
  trigger: z.string(),
  status: z.enum(['running', 'completed', 'failed']),
  counts: z.object({ added: z.number(), updated: z.number(), deleted: z.number(), failed: z.number(), pages: z.number() }),
  progress: z.record(z.string(), z.unknown()),
  error: z.object({ type: z.string(), message: z.string() }).nullable(),
  startedAt: z.string(),
  finishedAt: z.string().nullable(),
});
const webhookDeliverySchema = z.object({
  /** The provider's event id (HubSpot) or a digest of the delivery (Kommo): what makes a redelivery a duplicate. */
  dedupeKey: z.string(),
  kind: z.string(),
  objectType: z.string(),
  externalId: z.string(),
  change: z.enum(['upsert', 'delete']),
  receivedAt: z.string(),
  /** Null while unprocessed: the intake is still working on it, or retrying while the CRM is down. */
  processedAt: z.string().nullable(),
  /** Why a processed delivery had no effect (the CRM refused a read of its record, 4xx); null when it worked. */
  error: z.string().nullable(),
});
const recordSchema = z.object({
  connectionId: z.uuid(),
  type: z.string(),
  externalId: z.string(),
  name: z.string().nullable(),
  email: z.string().nullable(),
  pipelineId: z.string().nullable(),
  stageId: z.string().nullable(),
  ownerId: z.string().nullable(),
  properties: z.record(z.string(), z.unknown()),
  remoteUpdatedAt: z.string().nullable(),
  deletedAt: z.string().nullable(),
});

const orgParams = z.object({ orgId: z.uuid() });
const connParams = z.object({ orgId: z.uuid(), connectionId: z.uuid() });
const errors = { 400: problemSchema, 403: problemSchema, 404: problemSchema, 409: problemSchema };

/** Authenticated CRM routes under /v1/orgs/:orgId/crm. */
export function crmConnectionRoutes(crm: CrmService): FastifyPluginAsyncZod {
  return async (app) => {
    app.post('/orgs/:orgId/crm/connections', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'createCrmConnection',
        summary: 'Connect a CRM (OAuth authorize URL, or a long-lived / private-app token)',
        params: orgParams,
        body: z.strictObject({
          provider,
          name: z.string().min(1).max(200),
          auth: z.discriminatedUnion('kind', [
            z.strictObject({ kind: z.literal('oauth') }),
            z.strictObject({ kind: z.literal('token'), token: z.string().min(10).max(4000), accountUrl: z.url().max(500).optional() }),
          ]),
        }),
        response: { 201: z.object({ connection: connectionSchema, authorizeUrl: z.string().nullable(), webhookUrl: z.string() }), ...errors },
      },
      handler: async (request, reply) => {
        // OAuth: bind the flow to this browser with a short-lived cookie (reused while it lasts,
        // so an admin may start several flows); the callback checks it.
        const browserBinding = request.body.auth.kind === 'oauth' ? (bindingFromCookies(request.headers.cookie) ?? newBinding()) : undefined;
        const created = await crm.create(request.principal, request.params.orgId, request.body, browserBinding ? { browserBinding } : {});
        if (browserBinding) reply.header('set-cookie', bindingCookie(browserBinding, { maxAgeSeconds: OAUTH_STATE_TTL_MINUTES * 60, secure: request.protocol === 'https' }));
        reply.header('location', `/v1/orgs/${request.params.orgId}/crm/connections/${created.connection.id}`);
        return reply.code(201).send(created);
      },
    });

    app.get('/orgs/:orgId/crm/connections', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: { operationId: 'listCrmConnections', summary: 'List CRM connections', params: orgParams, response: { 200: z.object({ items: z.array(connectionSchema) }), ...errors } },
      handler: async (request) => ({ items: await crm.list(request.principal, request.params.orgId) }),
    });

    app.get('/orgs/:orgId/crm/connections/:connectionId', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: { operationId: 'getCrmConnection', summary: 'Get a CRM connection', params: connParams, response: { 200: connectionSchema, ...errors } },
      handler: async (request) => crm.get(request.principal, request.params.orgId, request.params.connectionId),
    });

    app.patch('/orgs/:orgId/crm/connections/:connectionId', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: { operationId: 'renameCrmConnection', summary: 'Rename a CRM connection', params: connParams, body: z.strictObject({ name: z.string().min(1).max(200).optional() }), response: { 200: connectionSchema, ...errors } },
      handler: async (request) => crm.rename(request.principal, request.params.orgId, request.params.connectionId, request.body),
    });

    app.delete('/orgs/:orgId/crm/connections/:connectionId', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: { operationId: 'deleteCrmConnection', summary: 'Delete a CRM connection, its schedule, credentials and synced records', params: connParams, response: { 204: z.null(), ...errors } },
      handler: async (request, reply) => {
        await crm.remove(request.principal, request.params.orgId, request.params.connectionId);
        return reply.code(204).send(null);
      },
    });

    app.post('/orgs/:orgId/crm/connections/:connectionId/test', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'testCrmConnection',
        summary: 'Call the CRM with the stored credentials',
        params: connParams,
        response: { 200: z.object({ ok: z.boolean(), accountId: z.string().nullable(), error: z.object({ type: z.string(), message: z.string() }).nullable() }), ...errors },
      },
      handler: async (request) => crm.test(request.principal, request.params.orgId, request.params.connectionId),
    });

    app.put('/orgs/:orgId/crm/connections/:connectionId/schedule', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: { operationId: 'putCrmSyncSchedule', summary: 'Set the sync schedule (interval or cron with time zone; paused)', params: connParams, body: scheduleInputSchema, response: { 200: connectionSchema, ...errors } },
      handler: async (request) => crm.putSchedule(request.principal, request.params.orgId, request.params.connectionId, request.body),
    });

    app.get('/orgs/:orgId/crm/connections/:connectionId/messaging-settings', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'getCrmMessagingSettings',
        summary: "How agent replies reach the connection's lead threads (admins): HubSpot sender user, Kommo quota and Salesbot",
        params: connParams,
        response: { 200: messagingSettingsSchema, ...errors },
      },
      handler: async (request) => crm.getMessagingSettings(request.principal, request.params.orgId, request.params.connectionId),
    });

    app.put('/orgs/:orgId/crm/connections/:connectionId/messaging-settings', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'putCrmMessagingSettings',
        summary: "Set how agent replies reach the connection's lead threads (admins); omitted fields take their defaults",
        params: connParams,
        body: messagingSettingsSchema,
        response: { 200: messagingSettingsSchema, ...errors },
      },
      handler: async (request) => crm.putMessagingSettings(request.principal, request.params.orgId, request.params.connectionId, request.body),
    });

    app.post('/orgs/:orgId/crm/connections/:connectionId/syncs', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'startCrmSync',
        summary: 'Start a sync now',
        params: connParams,
        body: z.strictObject({ mode: z.enum(['incremental', 'full']).default('incremental') }),
        response: { 202: z.object({ workflowId: z.string() }), ...errors },
      },
      handler: async (request, reply) => reply.code(202).send(await crm.startSync(request.principal, request.params.orgId, request.params.connectionId, request.body.mode)),
    });

    app.get('/orgs/:orgId/crm/connections/:connectionId/syncs', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: { operationId: 'listCrmSyncs', summary: 'Sync history, newest first', params: connParams, querystring: z.object(pageQuery), response: { 200: z.object({ items: z.array(syncRunSchema), nextCursor: z.string().nullable() }), ...errors } },
      handler: async (request) => crm.listSyncs(request.principal, request.params.orgId, request.params.connectionId, request.query),
    });

    app.get('/orgs/:orgId/crm/connections/:connectionId/webhook-deliveries', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'listCrmWebhookDeliveries',
        summary: 'Recent webhook deliveries of the connection, newest first (admins): what arrived and whether it was processed',
        params: connParams,
        querystring: z.object({ limit: pageQuery.limit }),
        response: { 200: z.object({ items: z.array(webhookDeliverySchema) }), ...errors },
      },
      handler: async (request) => crm.listWebhookDeliveries(request.principal, request.params.orgId, request.params.connectionId, request.query),
    });

    app.get('/orgs/:orgId/crm/records', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: {
        operationId: 'listCrmRecords',
        summary: 'Synced CRM records',
        params: orgParams,
        querystring: z.object({
          type: z.enum(['pipelines', 'users', 'companies', 'contacts', 'deals']),
          q: z.string().min(1).max(200).optional(),
          connectionId: z.uuid().optional(),
          includeDeleted: z.enum(['true', 'false']).transform((v) => v === 'true').optional(),
          ...pageQuery,
        }),
        response: { 200: z.object({ items: z.array(recordSchema), nextCursor: z.string().nullable() }), ...errors },
      },
      handler: async (request) => crm.listRecords(request.principal, request.params.orgId, request.query),
    });
  };
}
