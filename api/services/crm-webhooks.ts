/**
 * CRM webhook intake. Unauthenticated by design (the CRM calls us), so each delivery proves
 * itself first: HubSpot's v3 signature over the full URL, body and timestamp; for Kommo, which
 * signs nothing, the per-connection secret in the URL (stored hashed). Only then does the
 * request act, as the worker of the connection's org. Each change is recorded once
 * (public.crm_webhook_deliveries, keyed by the provider's event id or the delivery's digest) and
 * the changed record is re-read through the API, not trusted from the payload, then upserted.
 * A redelivery of a processed change has no effect; one that failed is processed again.
 */
import type pg from 'pg';
import { ConnectionUnavailableError, type CredentialStore } from '../../integrations/crm/credentials.js';
import type { CrmSettings } from '../../integrations/crm/settings.js';
import { tombstoneRecords, upsertRecords } from '../../integrations/crm/record-store.js';
import type { CrmAdapter, CrmProvider, CrmWebhookEvent } from '../../integrations/crm/types.js';
import { parseHubspotEvents, parseKommoWebhook, verifyHubspotV3, WebhookPayloadError } from '../../integrations/crm/webhooks.js';
import { constantTimeEqual, sha256Hex } from '../../lib/crypto.js';
import { withPrincipal } from '../../lib/db.js';
import { notFound, ProblemError } from '../problems.js';
import type { RunService } from './runs.js';

export interface WebhookDelivery {
  provider: CrmProvider;
  connectionId: string;
  rawBody: string;
  /** Path and query as received, e.g. /v1/webhooks/crm/hubspot/<id>?x=1 */
  url: string;
  /** Origin the CRM called when no public URL is configured. */
  origin: string;
  headers: Record<string, string | string[] | undefined>;
  secret?: string | undefined;
}

export interface WebhookResult {
  received: number;
  processed: number;
  duplicates: number;
}

const header = (h: WebhookDelivery['headers'], name: string) => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

/** An agent trigger as stored in agents.triggers (validated by the agents API). */
export type AgentTrigger = { event: 'lead_stage_entered'; stageId: string; pipelineId?: string; cooldownMinutes?: number } | { event: 'incoming_message' };

/** How long a stage trigger stays quiet for a lead after it fired, unless the trigger says otherwise. */
export const DEFAULT_TRIGGER_COOLDOWN_MINUTES = 60;

/** The conversation of a lead: one per (agent, connection, lead). */
export const leadThreadKey = (connectionId: string, leadExternalId: string) => `crm:${connectionId}:${leadExternalId}`;

export function createCrmWebhookService(deps: {
  pool: pg.Pool;
  credentials: CredentialStore;
  settings: CrmSettings;
  /** Starts and messages the runs agent triggers ask for; without it, webhooks only upsert. */
  runs?: RunService;
  nowMs?: () => number;
}) {
  const { pool, credentials, settings } = deps;

  async function receive(delivery: WebhookDelivery): Promise<WebhookResult> {
    const { rows } = await pool.query<{ org_id: string; provider: CrmProvider; webhook_secret_hash: string | null; status: string }>(
      `select org_id, provider, webhook_secret_hash, status from private.crm_webhook_target($1)`,
      [delivery.connectionId],
    );
    const target = rows[0];
    if (!target || target.provider !== delivery.provider) throw notFound('Webhook endpoint');

    let events: CrmWebhookEvent[];
    try {
      if (delivery.provider === 'hubspot') {
        const secret = settings.hubspot.app?.clientSecret;
        if (!secret) throw new ProblemError('service-unavailable', 'HubSpot webhooks are not configured on this server.');
        const check = verifyHubspotV3({
          clientSecret: secret,
          method: 'POST',
          uri: `${settings.publicUrl ?? delivery.origin}${delivery.url}`,
          body: delivery.rawBody,
          signature: header(delivery.headers, 'x-hubspot-signature-v3'),
          timestamp: header(delivery.headers, 'x-hubspot-request-timestamp'),
          ...(deps.nowMs ? { nowMs: deps.nowMs() } : {}),
        });
        if (!check.ok) throw new ProblemError('unauthenticated', `The webhook signature is invalid: ${check.reason}.`);
        let body: unknown;
        try {
          body = JSON.parse(delivery.rawBody);
        } catch {
          throw new ProblemError('malformed-body', 'The webhook body is not JSON.');
        }
        events = parseHubspotEvents(body);
      } else {
        if (!target.webhook_secret_hash || !delivery.secret || !constantTimeEqual(sha256Hex(delivery.secret), target.webhook_secret_hash)) {
          throw new ProblemError('unauthenticated', 'The webhook URL secret is missing or wrong.');
        }
        events = parseKommoWebhook(delivery.rawBody).events;
      }
    } catch (err) {
      if (err instanceof WebhookPayloadError) throw new ProblemError('validation-error', err.message);
      throw err;
    }

    const orgId = target.org_id;
    const scope = { orgId, connectionId: delivery.connectionId };
    const worker = { kind: 'worker', orgId } as const;
    const pending = await withPrincipal(pool, worker, async (tx) => {
      for (const e of events) {
        await tx.query(
          `insert into public.crm_webhook_deliveries (org_id, connection_id, dedupe_key, kind, object_type, external_id, change)
           values ($1, $2, $3, $4, $5, $6, $7) on conflict do nothing`,
          [orgId, delivery.connectionId, e.dedupeKey, e.kind, e.objectType, e.externalId, e.change],
        );
      }
      const { rows: open } = await tx.query<{ dedupe_key: string }>(
        `select dedupe_key from public.crm_webhook_deliveries where connection_id = $1 and dedupe_key = any($2::text[]) and processed_at is null`,
        [delivery.connectionId, events.map((e) => e.dedupeKey)],
      );
      const keys = new Set(open.map((r) => r.dedupe_key));
      return events.filter((e) => keys.has(e.dedupeKey));
    });
    if (pending.length === 0 || target.status !== 'active') return { received: events.length, processed: 0, duplicates: events.length - pending.length };

    let adapter;
    try {
      ({ adapter } = await credentials.open(scope));
    } catch (err) {
      if (err instanceof ConnectionUnavailableError) return { received: events.length, processed: 0, duplicates: events.length - pending.length };
      throw err;
    }
    // One record per (type, id) even if a delivery mentions it several times. Incoming messages
    // (delivered or only named) are not record changes: they go to the lead's conversation instead.
    const latest = new Map<string, CrmWebhookEvent[]>();
    for (const e of pending) {
      if (e.message || e.messageRef) continue;
      latest.set(`${e.objectType}:${e.externalId}`, [...(latest.get(`${e.objectType}:${e.externalId}`) ?? []), e]);
    }
    for (const group of latest.values()) {
      const last = group.at(-1)!;
      const record = last.change === 'delete' ? null : await adapter.getRecord(last.objectType, last.externalId);
      const entered = await withPrincipal(pool, worker, async (tx) => {
        const before = await tx.query<{ stage_id: string | null }>(
          `select stage_id from public.crm_records where connection_id = $1 and object_type = $2 and external_id = $3 and deleted_at is null`,
          [delivery.connectionId, last.objectType, last.externalId],
        );
        if (record) await upsertRecords(tx, scope, last.objectType, [record], null);
        else await tombstoneRecords(tx, scope, last.objectType, [last.externalId]);
        // "Entered a stage": the provider said the stage changed, or the stage we knew differs.
        const moved = group.some((e) => e.stageChange) || before.rows[0]?.stage_id !== record?.stageId;
        return record && record.objectType === 'deals' && record.stageId && moved ? record : null;
      });
      // Effects before the delivery counts as processed: a failure here leaves it open, and the
      // redelivery finds the runs it already started by their delivery-derived idempotency keys.
      if (entered && deps.runs) await startTriggeredRuns(orgId, delivery, last.dedupeKey, entered);
      await markProcessed(orgId, delivery.connectionId, group.map((e) => e.dedupeKey));
    }
    // As for records: a failed API read throws before the event is marked processed, so the
    // CRM's redelivery processes it again.
    for (const e of pending) {
      if (!e.message && !e.messageRef) continue;
      if (deps.runs) await postIncomingMessage(orgId, delivery.connectionId, adapter, e);
      await markProcessed(orgId, delivery.connectionId, [e.dedupeKey]);
    }
    return { received: events.length, processed: pending.length, duplicates: events.length - pending.length };
  }

  async function markProcessed(orgId: string, connectionId: string, keys: string[]): Promise<void> {
    await withPrincipal(pool, { kind: 'worker', orgId }, (tx) =>
      tx.query(`update public.crm_webhook_deliveries set processed_at = now() where connection_id = $1 and dedupe_key = any($2::text[])`, [connectionId, keys]),
    );
  }

  async function triggeredAgents(orgId: string, connectionId: string, match: AgentTrigger): Promise<{ id: string; triggers: AgentTrigger[] }[]> {
    return withPrincipal(pool, { kind: 'worker', orgId }, async (tx) => {
      const { rows } = await tx.query<{ id: string; triggers: AgentTrigger[] }>(
        `select id, triggers from public.agents where org_id = $1 and crm_connection_id = $2 and triggers @> $3::jsonb order by id`,
        [orgId, connectionId, JSON.stringify([match])],
      );
      return rows;
    });
  }

  /**
   * One run per agent whose `lead_stage_entered` trigger names the record's stage (and pipeline,
   * if set), unless that trigger already fired for this lead and stage within its cooldown.
   */
  async function startTriggeredRuns(orgId: string, delivery: WebhookDelivery, dedupeKey: string, record: { externalId: string; stageId: string | null; pipelineId: string | null }) {
    const agents = await triggeredAgents(orgId, delivery.connectionId, { event: 'lead_stage_entered', stageId: record.stageId! });
    const deliveryId = sha256Hex(`${delivery.connectionId}:${dedupeKey}`).slice(0, 32);
    for (const agent of agents) {
      const fitting = agent.triggers.filter(
        (t): t is Extract<AgentTrigger, { event: 'lead_stage_entered' }> =>
          t.event === 'lead_stage_entered' && t.stageId === record.stageId && (t.pipelineId === undefined || t.pipelineId === record.pipelineId),
      );
      if (fitting.length === 0) continue;
      // Several fitting triggers (with and without a pipeline): the shortest cooldown decides.
      const cooldownMinutes = Math.min(...fitting.map((t) => t.cooldownMinutes ?? DEFAULT_TRIGGER_COOLDOWN_MINUTES));
      if (!(await claimFiring(orgId, agent.id, delivery.connectionId, record.externalId, record.stageId!, deliveryId, cooldownMinutes))) continue;
      const pipeline = record.pipelineId ? ` of pipeline ${record.pipelineId}` : '';
      await deps.runs!.startRun(
        { kind: 'worker', orgId },
        {
          orgId,
          agentId: agent.id,
          input: `CRM ${delivery.provider} webhook: lead ${record.externalId} (connection ${delivery.connectionId}) entered stage ${record.stageId}${pipeline}.`,
          idempotencyKey: `webhook:${deliveryId}:${agent.id}`,
        },
      );
    }
  }

  /**
   * Claims the trigger's firing for (agent, lead, stage): true when none happened within the
   * cooldown, or when this same delivery made it (its retry must still start the run, which the
   * run's idempotency key then dedupes). One statement, so concurrent deliveries claim once.
   */
  async function claimFiring(orgId: string, agentId: string, connectionId: string, leadExternalId: string, stageId: string, deliveryId: string, cooldownMinutes: number): Promise<boolean> {
    const { rowCount } = await withPrincipal(pool, { kind: 'worker', orgId }, (tx) =>
      tx.query(
        `insert into public.agent_trigger_firings as f (org_id, agent_id, connection_id, lead_external_id, stage_id, delivery_id)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (agent_id, connection_id, lead_external_id, stage_id) do update
           set delivery_id = excluded.delivery_id,
               fired_at = case when f.delivery_id = excluded.delivery_id then f.fired_at else now() end
           where f.delivery_id = excluded.delivery_id or f.fired_at <= now() - make_interval(mins => $7)`,
        [orgId, agentId, connectionId, leadExternalId, stageId, deliveryId, cooldownMinutes],
      ),
    );
    return rowCount === 1;
  }

  /**
   * The lead's incoming message, into the lead's conversation with each agent triggered by
   * incoming messages. Kommo delivers the text about a lead; HubSpot only names the message, whose
   * text and contact are read through the API, and only when some agent listens (each read
   * spends the connection's rate budget).
   */
  async function postIncomingMessage(orgId: string, connectionId: string, adapter: CrmAdapter, e: CrmWebhookEvent) {
    const agents = await triggeredAgents(orgId, connectionId, { event: 'incoming_message' });
    if (agents.length === 0) return;
    let incoming: { leadExternalId: string; text: string } | null;
    if (e.message) {
      incoming = { leadExternalId: e.externalId, text: e.message.text };
    } else {
      if (!adapter.getIncomingMessage) throw new Error(`The ${adapter.provider} adapter cannot read conversation messages (event ${e.kind}).`);
      const read = await adapter.getIncomingMessage(e.messageRef!);
      incoming = read && { leadExternalId: read.contactId, text: read.text };
    }
    if (!incoming) return;
    const deliveryId = sha256Hex(`${connectionId}:${e.dedupeKey}`).slice(0, 32);
    for (const agent of agents) {
      await deps.runs!.postMessage(
        { kind: 'worker', orgId },
        { orgId, agentId: agent.id, threadKey: leadThreadKey(connectionId, incoming.leadExternalId), content: incoming.text, sourceKey: `webhook:${deliveryId}:${agent.id}` },
      );
    }
  }

  return { receive };
}

export type CrmWebhookService = ReturnType<typeof createCrmWebhookService>;
