/**
 * The one way to tell an org's people something happened (approval.requested,
 * handoff.requested, run.failed, reply.failed): `publish` from any activity. It records the
 * event (id derived from its cause, so a retried activity records it once), one delivery per
 * subscribed webhook endpoint in the same transaction, and after commit hands each pending
 * delivery to Temporal (`orgWebhookDelivery`, started by business-key workflow id, so starting
 * it again finds the same execution). Call it after the transaction that made the cause durable
 * has committed, never inside a request handler: a crash between the two is retried by Temporal
 * and the second publish finds the event and its deliveries and only (re)starts what is pending.
 */
import type pg from 'pg';
import { withPrincipal } from '../../lib/db.js';
import { orgEventId, type OrgEventType } from '../../lib/org-events.js';
import type { JsonValue } from '../effects.js';

export interface OrgEventInput {
  orgId: string;
  type: OrgEventType;
  /** What caused it, unique within the type (`<approvalId>`, `<runId>`, `<runId>:<seq>`): the event's identity. */
  cause: string;
  /** Ids and small facts only (runId, agentId, toolName…): receivers look the rest up through the API. */
  data: Record<string, JsonValue>;
}

export interface WebhookDeliveryRef {
  orgId: string;
  deliveryId: string;
}

/**
 * The Temporal side of a delivery, given by the worker process (it needs the workflow
 * definition, which activities must not import). Idempotent by workflow id.
 */
export interface WebhookDispatch {
  startDelivery(ref: WebhookDeliveryRef): Promise<void>;
}

export interface OrgEventPublisher {
  publish(event: OrgEventInput): Promise<{ eventId: string; deliveries: number }>;
}

const worker = (orgId: string) => ({ kind: 'worker', orgId }) as const;

export function createOrgEventPublisher(deps: { pool: pg.Pool; dispatch: WebhookDispatch }): OrgEventPublisher {
  return {
    async publish(event) {
      const eventId = orgEventId(event.orgId, event.type, event.cause);
      const pending = await withPrincipal(deps.pool, worker(event.orgId), async (tx) => {
        const known = await tx.query(`select 1 from public.org_events where id = $1`, [eventId]);
        if (known.rowCount === 0) {
          // Numbers the org's events in commit order, so the live feed's Last-Event-ID never skips
          // one that committed late: publishers of one org take turns for the few statements below.
          await tx.query(`select pg_advisory_xact_lock(hashtextextended('org_events:' || $1::text, 0))`, [event.orgId]);
          await tx.query(
            `with event as (
               insert into public.org_events (id, org_id, seq, type, payload)
               select $1, $2, coalesce(max(seq), 0) + 1, $3, $4 from public.org_events where org_id = $2
               on conflict (id) do nothing
               returning id
             )
             insert into public.webhook_deliveries (org_id, endpoint_id, event_id)
             select e.org_id, e.id, event.id from public.webhook_endpoints e, event
              where e.org_id = $2 and (cardinality(e.event_types) = 0 or $3 = any (e.event_types))
             on conflict (endpoint_id, event_id) do nothing`,
            [eventId, event.orgId, event.type, event.data],
          );
        }
        const { rows } = await tx.query<{ id: string }>(
          `select id from public.webhook_deliveries where event_id = $1 and org_id = $2 and status = 'pending' order by id`,
          [eventId, event.orgId],
        );
        return rows.map((row) => row.id);
      });
      for (const deliveryId of pending) await deps.dispatch.startDelivery({ orgId: event.orgId, deliveryId });
      return { eventId, deliveries: pending.length };
    },
  };
}
