import { withPrincipal } from '../../../lib/db.js';
import type { Principal } from '../../../lib/principal.js';
import { requireOrgRole } from '../org-access.js';
import type { CrmContext } from './shared.js';

export interface WebhookDeliveryView {
  dedupeKey: string;
  kind: string;
  objectType: string;
  externalId: string;
  change: 'upsert' | 'delete';
  receivedAt: string;
  processedAt: string | null;
  error: string | null;
}

export function createDeliveryOps(ctx: CrmContext) {
  const { pool, getRow } = ctx;

  /**
   * The connection's most recent webhook deliveries, newest first: what the CRM sent, when, and
   * whether it was processed. Admins only (the rows say which records changed and when). A
   * delivery left unprocessed is still queued; a processed one with an `error` had no effect.
   */
  async function listWebhookDeliveries(principal: Principal, orgId: string, connectionId: string, query: { limit: number }): Promise<{ items: WebhookDeliveryView[] }> {
    return withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      await getRow(tx, orgId, connectionId);
      const { rows } = await tx.query<{ dedupe_key: string; kind: string; object_type: string; external_id: string; change: 'upsert' | 'delete'; received_at: Date; processed_at: Date | null; error: string | null }>(
        `select dedupe_key, kind, object_type, external_id, change, received_at, processed_at, error
           from public.crm_webhook_deliveries
          where org_id = $1 and connection_id = $2
          order by received_at desc, dedupe_key desc limit $3`,
        [orgId, connectionId, query.limit],
      );
      return {
        items: rows.map((r) => ({
          dedupeKey: r.dedupe_key,
          kind: r.kind,
          objectType: r.object_type,
          externalId: r.external_id,
          change: r.change,
          receivedAt: r.received_at.toISOString(),
          processedAt: r.processed_at?.toISOString() ?? null,
          error: r.error,
        })),
      };
    });
  }

  return { listWebhookDeliveries };
}
