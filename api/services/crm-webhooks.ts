/**
 * CRM webhook intake. Unauthenticated by design (the CRM calls us), so each delivery proves
 * itself first: HubSpot's v3 signature over the full URL, body and timestamp; for Kommo, which
 * signs nothing, the per-connection secret in the URL (stored hashed). Only then does the
 * request act, as the worker of the connection's org, and it only records: each change once
 * (public.crm_webhook_deliveries, keyed by the provider's event id or the delivery's digest),
 * then wakes the connection's `crmIntake` workflow (signal-with-start) and answers. Reading the
 * CRM, upserting records, evaluating triggers and starting runs happen there, in activities
 * with timeouts and retries (activities/crm-intake.ts), never in this request.
 * A redelivery of a recorded change has no further effect.
 */
import type { Client } from '@temporalio/client';
import type pg from 'pg';
import type { Logger } from '../../lib/logger.js';
import type { CrmSettings } from '../../integrations/crm/settings.js';
import type { CrmProvider, CrmWebhookEvent } from '../../integrations/crm/types.js';
import { parseHubspotEvents, parseKommoWebhook, verifyHubspotV3, WebhookPayloadError } from '../../integrations/crm/webhooks.js';
import { constantTimeEqual, sha256Hex } from '../../lib/crypto.js';
import { withPrincipal } from '../../lib/db.js';
import { crmIntake, deliveriesRecordedSignal } from '../../workflows/crm-intake.js';
import { CRM_SYNC_TASK_QUEUE, crmIntakeWorkflowId } from '../../workflows/crm-sync-ids.js';
import { OrgIdSearchAttribute } from '../../workflows/search-attributes.js';
import { notFound, ProblemError } from '../problems.js';

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
  /** Changes recorded by this delivery, to be processed by the intake workflow. */
  accepted: number;
  /** Changes recorded by an earlier delivery (the CRM redelivered them). */
  duplicates: number;
}

/** A recorded change: its columns, and the payload the CRM will not send again. */
const toRow = (e: CrmWebhookEvent) => ({
  dedupe_key: e.dedupeKey,
  kind: e.kind,
  object_type: e.objectType,
  external_id: e.externalId,
  change: e.change,
  payload: { ...(e.message ? { message: e.message } : {}), ...(e.messageRef ? { messageRef: e.messageRef } : {}), ...(e.stageChange ? { stageChange: true } : {}), ...(e.outgoing ? { outgoing: e.outgoing } : {}) },
});

const header = (h: WebhookDelivery['headers'], name: string) => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

export function createCrmWebhookService(deps: {
  pool: pg.Pool;
  settings: CrmSettings;
  temporal: Client;
  /** The queue of the crm-sync workers, which run the intake workflow. */
  intakeTaskQueue?: string;
  nowMs?: () => number;
  logger?: Logger;
}) {
  const { pool, settings } = deps;

  async function receive(delivery: WebhookDelivery): Promise<WebhookResult> {
    const { rows } = await pool.query<{ org_id: string; provider: CrmProvider; webhook_secret_hash: string | null; status: string; external_account_id: string | null }>(
      `select org_id, provider, webhook_secret_hash, status, external_account_id from private.crm_webhook_target($1)`,
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
        // HubSpot signs every portal's events with the one app secret: only the events of this
        // connection's own portal are its to take (when the portal is known, from OAuth or a test).
        const portal = target.external_account_id;
        if (portal !== null && Array.isArray(body)) {
          body = body.filter((e: unknown) => typeof e === 'object' && e !== null && String((e as { portalId?: unknown }).portalId) === portal);
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
    // Recorded in one statement; only then does Temporal hear of it (never inside the transaction).
    const { accepted, open } = await withPrincipal(pool, { kind: 'worker', orgId }, async (tx) => {
      const inserted = await tx.query<{ dedupe_key: string }>(
        `insert into public.crm_webhook_deliveries (org_id, connection_id, dedupe_key, kind, object_type, external_id, change, payload)
         select $1, $2, e.dedupe_key, e.kind, e.object_type, e.external_id, e.change, e.payload
           from jsonb_to_recordset($3::jsonb) as e(dedupe_key text, kind text, object_type text, external_id text, change text, payload jsonb)
         on conflict do nothing returning dedupe_key`,
        [orgId, delivery.connectionId, JSON.stringify(events.map(toRow))],
      );
      const pending = await tx.query<{ n: number }>(
        `select count(*)::int as n from public.crm_webhook_deliveries where connection_id = $1 and dedupe_key = any($2::text[]) and processed_at is null`,
        [delivery.connectionId, events.map((e) => e.dedupeKey)],
      );
      return { accepted: inserted.rowCount ?? 0, open: pending.rows[0]!.n };
    });
    // A redelivery of something still open wakes the intake again: the first hand-over may be the
    // one that failed. An inactive connection keeps its deliveries until it is active again.
    if (open > 0 && target.status === 'active') await handOver(orgId, delivery.connectionId);
    return { received: events.length, accepted, duplicates: events.length - accepted };
  }

  async function handOver(orgId: string, connectionId: string): Promise<void> {
    try {
      await deps.temporal.workflow.signalWithStart(crmIntake, {
        taskQueue: deps.intakeTaskQueue ?? CRM_SYNC_TASK_QUEUE,
        workflowId: crmIntakeWorkflowId(connectionId),
        args: [{ orgId, connectionId }],
        signal: deliveriesRecordedSignal,
        typedSearchAttributes: [{ key: OrgIdSearchAttribute, value: orgId }],
        staticSummary: `CRM webhook intake of connection ${connectionId}`,
      });
    } catch (err) {
      // Recorded but not handed over: the CRM's redelivery (it retries non-2xx) hands it over.
      deps.logger?.warn({ err, connectionId }, 'webhook delivery recorded but not handed to Temporal');
      throw new ProblemError('service-unavailable', 'The delivery was recorded but could not be queued for processing; retry.');
    }
  }

  return { receive };
}

export type CrmWebhookService = ReturnType<typeof createCrmWebhookService>;
