/**
 * Org events: what people of an org are told about, by signed webhooks to their endpoints and by
 * the live feed (docs/api.md "Org events and webhooks"). Shared by the API (validation, OpenAPI)
 * and the workers (publishing, delivery), so it lives at the bottom layer.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';

/**
 * Where an endpoint's signing secret is stored, AES-256-GCM under ENCRYPTION_KEYS with the
 * endpoint id as the row in its AAD: written by the API, read by the delivery activity, re-encrypted
 * by `npm run rotate-keys`.
 */
export const WEBHOOK_SECRET_COLUMN = 'webhook_endpoints.secret';
export const webhookEndpointSecrets = { table: 'webhook_endpoints', idColumn: 'id', column: 'secret' } as const;

export const ORG_EVENT_TYPES = ['approval.requested', 'handoff.requested', 'run.failed', 'reply.failed'] as const;
export const orgEventTypeSchema = z.enum(ORG_EVENT_TYPES);
export type OrgEventType = z.infer<typeof orgEventTypeSchema>;

/** The LISTEN channel the org_events trigger notifies on commit, as `orgId:seq`. */
export const ORG_EVENTS_CHANNEL = 'org_events';

/**
 * An event's id, derived from what caused it (`approval:<approvalId>`, `run:<runId>`…), so the
 * same cause recorded twice (a retried activity) is one event, one delivery per endpoint, and
 * one `webhook-id` receivers can deduplicate on. A UUID in form (version nibble 5-like, as
 * RFC 9562 name-based ids are) so it fits the uuid column.
 */
export function orgEventId(orgId: string, type: OrgEventType, cause: string): string {
  const hex = createHash('sha256').update(`${orgId}\n${type}\n${cause}`, 'utf8').digest('hex');
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** The body every receiver gets, as the Standard Webhooks specification suggests (`type`, `timestamp`, `data`). */
export interface OrgEventEnvelope {
  id: string;
  type: OrgEventType;
  timestamp: string;
  data: Record<string, unknown>;
}
