/**
 * One attempt at delivering an org event to one webhook endpoint, and its line in the delivery
 * log. Reads the delivery, decrypts the endpoint's signing secret inside the activity (it never
 * appears in arguments, results or histories), signs the body as Standard Webhooks does
 * (lib/standard-webhooks.ts), POSTs it through the SSRF-guarded fetch, and records the attempt
 * and the delivery's state in one transaction after the request (never across it). HTTP failures
 * are results, not activity failures: the workflow decides when to try again (durable timers),
 * so the log shows each attempt and when the next one is due. A crash after the POST and before
 * the record means the receiver may get the event twice with the same `webhook-id`, which the
 * specification asks receivers to deduplicate on.
 */
import type pg from 'pg';
import { decryptSecret, type Keyring } from '../../lib/crypto.js';
import { withPrincipal } from '../../lib/db.js';
import { WEBHOOK_SECRET_COLUMN, type OrgEventEnvelope, type OrgEventType } from '../../lib/org-events.js';
import { parseRetryAfter } from '../../lib/retry-after.js';
import { UnsafeUrlError, type GuardedFetch } from '../../lib/ssrf.js';
import { signWebhook } from '../../lib/standard-webhooks.js';

export interface WebhookDeliveryActivityDeps {
  pool: pg.Pool;
  /** Decrypts endpoint secrets (ENCRYPTION_KEYS); without it every delivery fails with a clear error. */
  keyring: Keyring | undefined;
  /** lib/ssrf.ts `createGuardedFetch`: endpoints are customer URLs. */
  fetch: GuardedFetch;
  /** A receiver gets this long to answer (default 10 s). */
  timeoutMs?: number;
}

export interface DeliveryAttemptInput {
  orgId: string;
  deliveryId: string;
  attempt: number;
  /** The wait before the next attempt if this one fails, or null when this is the last. */
  retryInSeconds: number | null;
  /** No attempt is planned after this instant (ISO): the delivery fails instead. */
  giveUpAt: string;
}

export type DeliveryAttemptResult =
  | { outcome: 'delivered' | 'failed' | 'gone' }
  | { outcome: 'retry'; retryInSeconds: number };

/** A Retry-After longer than this is not honoured as such (the schedule still applies). */
const MAX_RETRY_AFTER_SECONDS = 3600;

const worker = (orgId: string) => ({ kind: 'worker', orgId }) as const;

interface DeliveryRow {
  status: 'pending' | 'delivered' | 'failed';
  endpoint_id: string;
  url: string;
  secret: string;
  event_id: string;
  type: OrgEventType;
  payload: Record<string, unknown>;
  created_at: Date;
}

function describeFailure(err: unknown): string {
  if (err instanceof UnsafeUrlError) return `refused: the endpoint ${err.message}`;
  if (err instanceof Error && err.name === 'TimeoutError') return 'timed out waiting for the endpoint';
  const cause = err instanceof Error ? (err.cause as { code?: string; message?: string } | undefined) : undefined;
  if (cause?.code === 'ESSRF') return 'refused: the endpoint resolves to an internal network address';
  // Network errors only (never the URL, which may carry a token of the receiver's).
  return `could not reach the endpoint (${cause?.code ?? (err instanceof Error ? err.name : 'error')})`;
}

export function createWebhookDeliveryActivities(deps: WebhookDeliveryActivityDeps) {
  const timeoutMs = deps.timeoutMs ?? 10_000;
  const { fetch } = deps;

  async function attemptWebhookDelivery(input: DeliveryAttemptInput): Promise<DeliveryAttemptResult> {
    const row = await withPrincipal(deps.pool, worker(input.orgId), async (tx) => {
      const { rows } = await tx.query<DeliveryRow>(
        `select d.status, d.endpoint_id, w.url, w.secret, e.id as event_id, e.type, e.payload, e.created_at
           from public.webhook_deliveries d
           join public.webhook_endpoints w on w.id = d.endpoint_id and w.org_id = d.org_id
           join public.org_events e on e.id = d.event_id and e.org_id = d.org_id
          where d.id = $1 and d.org_id = $2`,
        [input.deliveryId, input.orgId],
      );
      return rows[0];
    });
    // The endpoint (and with it the delivery) was deleted: nobody is waiting for it any more.
    if (!row) return { outcome: 'gone' };
    // A retry of an attempt that was recorded before the worker died.
    if (row.status !== 'pending') return { outcome: row.status };

    let statusCode: number | null = null;
    let error: string | null = null;
    let retryAfterSeconds = 0;
    let permanent = false;
    const started = Date.now();
    if (!deps.keyring) {
      error = 'the worker has no ENCRYPTION_KEYS to open the endpoint secret with';
    } else {
      const secret = decryptSecret(deps.keyring, row.secret, { orgId: input.orgId, rowId: row.endpoint_id, column: WEBHOOK_SECRET_COLUMN });
      const envelope: OrgEventEnvelope = { id: row.event_id, type: row.type, timestamp: row.created_at.toISOString(), data: row.payload };
      const body = JSON.stringify(envelope);
      const headers = signWebhook(secret, row.event_id, Math.floor(Date.now() / 1000), body);
      try {
        const response = await fetch(row.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'gpt-agent-platform-webhooks/1', ...headers },
          body,
          signal: AbortSignal.timeout(timeoutMs),
        });
        statusCode = response.status;
        await response.body?.cancel().catch(() => undefined);
        if (!response.ok) {
          error = `the endpoint answered ${response.status}`;
          const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
          if (retryAfterMs !== undefined) retryAfterSeconds = Math.min(MAX_RETRY_AFTER_SECONDS, Math.ceil(retryAfterMs / 1000));
        }
      } catch (err) {
        error = describeFailure(err);
        // A URL that became internal stays refused: no point in a day of retries.
        permanent = err instanceof UnsafeUrlError || error.startsWith('refused');
      }
    }
    const durationMs = Date.now() - started;
    const delivered = error === null;
    const waitSeconds = input.retryInSeconds === null ? null : Math.max(input.retryInSeconds, retryAfterSeconds);
    const retry = !delivered && !permanent && waitSeconds !== null && Date.now() + waitSeconds * 1000 <= Date.parse(input.giveUpAt);
    const status = delivered ? 'delivered' : retry ? 'pending' : 'failed';

    await withPrincipal(deps.pool, worker(input.orgId), async (tx) => {
      await tx.query(
        `insert into public.webhook_delivery_attempts (org_id, delivery_id, attempt, status_code, error, duration_ms)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (delivery_id, attempt) do update
           set status_code = excluded.status_code, error = excluded.error, duration_ms = excluded.duration_ms, attempted_at = now()`,
        [input.orgId, input.deliveryId, input.attempt, statusCode, error, durationMs],
      );
      await tx.query(
        `update public.webhook_deliveries
            set status = $3, attempts = greatest(attempts, $4), last_status_code = $5, last_error = $6,
                next_attempt_at = case when $3 = 'pending' then now() + make_interval(secs => $7) end,
                delivered_at = case when $3 = 'delivered' then now() end
          where id = $1 and org_id = $2 and status = 'pending'`,
        [input.deliveryId, input.orgId, status, input.attempt, statusCode, error, waitSeconds ?? 0],
      );
    });
    if (status === 'pending') return { outcome: 'retry', retryInSeconds: waitSeconds! };
    return { outcome: status };
  }

  return { attemptWebhookDelivery };
}

export type WebhookDeliveryActivities = ReturnType<typeof createWebhookDeliveryActivities>;
