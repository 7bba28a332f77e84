import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { encryptSecret, type Keyring } from '../../lib/crypto.js';
import { withPrincipal } from '../../lib/db.js';
import { WEBHOOK_SECRET_COLUMN, type OrgEventType } from '../../lib/org-events.js';
import type { Principal } from '../../lib/principal.js';
import { assertPublicUrl, UnsafeUrlError, type SsrfPolicy } from '../../lib/ssrf.js';
import { generateWebhookSecret } from '../../lib/standard-webhooks.js';
import { cursorAt, decodeCursor, toPage, type KeysetRow } from '../pagination.js';
import { notFound, ProblemError } from '../problems.js';
import { DEFAULT_RESOURCE_CAPS, requireBelowCap, type ResourceCaps } from './caps.js';
import { requireOrgRole } from './org-access.js';

/**
 * Org webhook endpoints (admins): where the org's events are delivered, signed with a secret of
 * the endpoint's own that is shown once at creation and stored encrypted (lib/crypto.ts, bound to
 * org, endpoint and column). The URL passes the SSRF guard now (a clear 400) and again at every
 * delivery (workers). Deliveries and their attempts are the log admins read to see what reached
 * their systems.
 */

export interface WebhookEndpointView {
  id: string;
  url: string;
  description: string | null;
  eventTypes: OrgEventType[];
  createdBy: string | null;
  createdAt: string;
}

interface EndpointRow {
  id: string;
  url: string;
  description: string | null;
  event_types: OrgEventType[];
  created_by: string | null;
  created_at: Date;
}

const endpointColumns = 'id, url, description, event_types, created_by, created_at';

function toEndpointView(row: EndpointRow): WebhookEndpointView {
  return { id: row.id, url: row.url, description: row.description, eventTypes: row.event_types, createdBy: row.created_by, createdAt: row.created_at.toISOString() };
}

interface DeliveryRow {
  id: string;
  event_id: string;
  event_type: OrgEventType;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  last_status_code: number | null;
  last_error: string | null;
  next_attempt_at: Date | null;
  delivered_at: Date | null;
  created_at: Date;
  attempt_log: Array<{ attempt: number; status_code: number | null; error: string | null; duration_ms: number; attempted_at: string }>;
}

function toDeliveryView(row: DeliveryRow) {
  return {
    id: row.id,
    eventId: row.event_id,
    eventType: row.event_type,
    status: row.status,
    attempts: row.attempts,
    lastStatusCode: row.last_status_code,
    lastError: row.last_error,
    nextAttemptAt: row.next_attempt_at?.toISOString() ?? null,
    deliveredAt: row.delivered_at?.toISOString() ?? null,
    createdAt: row.created_at.toISOString(),
    attemptLog: row.attempt_log.map((a) => ({
      attempt: a.attempt,
      statusCode: a.status_code,
      error: a.error,
      durationMs: a.duration_ms,
      attemptedAt: new Date(a.attempted_at).toISOString(),
    })),
  };
}

export function createWebhookEndpointService(deps: { pool: pg.Pool; keyring: Keyring; ssrf?: SsrfPolicy; caps?: ResourceCaps }) {
  const caps = deps.caps ?? DEFAULT_RESOURCE_CAPS;
  /** https only (plain http only for allowlisted development hosts), and a public address. */
  async function assertDeliverableUrl(raw: string): Promise<void> {
    const problem = (message: string) => new ProblemError('validation-error', `The endpoint URL ${message}.`, [{ path: 'body.url', message }]);
    try {
      const url = await assertPublicUrl(raw, deps.ssrf);
      const allowed = (deps.ssrf?.allowedHosts ?? []).some((h) => h.toLowerCase() === url.host.toLowerCase() || h.toLowerCase() === url.hostname.toLowerCase());
      if (url.protocol !== 'https:' && !allowed) throw problem('must use https');
    } catch (err) {
      if (err instanceof UnsafeUrlError) throw problem(err.message);
      throw err;
    }
  }

  async function createEndpoint(principal: Principal, orgId: string, input: { url: string; description?: string | undefined; eventTypes: OrgEventType[] }) {
    // The role first (outsiders learn nothing, and make us resolve nothing); the URL outside any
    // transaction, because resolving it is a network call.
    await withPrincipal(deps.pool, principal, (tx) => requireOrgRole(tx, orgId, 'admin'));
    await assertDeliverableUrl(input.url);
    const secret = generateWebhookSecret();
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      await requireBelowCap(tx, caps, 'webhookEndpointsPerOrg', orgId);
      // The id first: the ciphertext is bound to it.
      const id = randomUUID();
      const { rows } = await tx.query<EndpointRow>(
        `insert into public.webhook_endpoints (id, org_id, url, description, event_types, secret, created_by)
         values ($1, $2, $3, $4, $5, $6, $7) returning ${endpointColumns}`,
        [
          id,
          orgId,
          input.url,
          input.description ?? null,
          [...new Set(input.eventTypes)],
          encryptSecret(deps.keyring, secret, { orgId, rowId: id, column: WEBHOOK_SECRET_COLUMN }),
          principal.kind === 'user' ? principal.userId : null,
        ],
      );
      return { ...toEndpointView(rows[0]!), secret };
    });
  }

  async function listEndpoints(principal: Principal, orgId: string) {
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      const { rows } = await tx.query<EndpointRow>(`select ${endpointColumns} from public.webhook_endpoints where org_id = $1 order by created_at, id`, [orgId]);
      return { items: rows.map(toEndpointView) };
    });
  }

  async function getEndpoint(principal: Principal, orgId: string, endpointId: string) {
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      const { rows } = await tx.query<EndpointRow>(`select ${endpointColumns} from public.webhook_endpoints where id = $1 and org_id = $2`, [endpointId, orgId]);
      if (!rows[0]) throw notFound('Webhook endpoint');
      return toEndpointView(rows[0]);
    });
  }

  /** Deleting ends its pending deliveries too (their workflows find nothing left to deliver). */
  async function deleteEndpoint(principal: Principal, orgId: string, endpointId: string): Promise<void> {
    await withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      const { rowCount } = await tx.query(`delete from public.webhook_endpoints where id = $1 and org_id = $2`, [endpointId, orgId]);
      if (rowCount === 0) throw notFound('Webhook endpoint');
    });
  }

  /** The delivery log of an endpoint, newest first, each with its attempts. */
  async function listDeliveries(principal: Principal, orgId: string, endpointId: string, page: { limit: number; cursor?: string | undefined }) {
    const after = decodeCursor(page.cursor);
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      const endpoint = await tx.query(`select 1 from public.webhook_endpoints where id = $1 and org_id = $2`, [endpointId, orgId]);
      if (endpoint.rowCount === 0) throw notFound('Webhook endpoint');
      const { rows } = await tx.query<DeliveryRow & KeysetRow>(
        `select d.id, d.event_id, e.type as event_type, d.status, d.attempts, d.last_status_code, d.last_error,
                d.next_attempt_at, d.delivered_at, d.created_at, ${cursorAt('d.created_at')},
                coalesce((select jsonb_agg(jsonb_build_object('attempt', a.attempt, 'status_code', a.status_code, 'error', a.error,
                                                              'duration_ms', a.duration_ms, 'attempted_at', a.attempted_at) order by a.attempt)
                            from public.webhook_delivery_attempts a where a.delivery_id = d.id and a.org_id = d.org_id), '[]'::jsonb) as attempt_log
           from public.webhook_deliveries d join public.org_events e on e.id = d.event_id and e.org_id = d.org_id
          where d.endpoint_id = $1 and d.org_id = $2
            and ($3::timestamptz is null or (d.created_at, d.id) < ($3::timestamptz, $4::uuid))
          order by d.created_at desc, d.id desc limit $5`,
        [endpointId, orgId, after?.createdAt ?? null, after?.id ?? null, page.limit + 1],
      );
      return toPage(rows, page.limit, toDeliveryView);
    });
  }

  return { createEndpoint, listEndpoints, getEndpoint, deleteEndpoint, listDeliveries };
}

export type WebhookEndpointService = ReturnType<typeof createWebhookEndpointService>;
