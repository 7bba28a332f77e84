/**
 * Verifying and parsing CRM webhook deliveries. HubSpot signs with its v3 scheme (reference B5);
 * Kommo signs nothing (reference A5), so its deliveries are authenticated by a secret we issue
 * per connection and put in the webhook URL, and the changed record is re-read through the API
 * rather than trusted from the form body.
 */
import { createHash, createHmac } from 'node:crypto';
import { constantTimeEqual } from '../../lib/crypto.js';
import type { CrmEntityType, CrmWebhookEvent } from './types.js';

export const HUBSPOT_SIGNATURE_MAX_AGE_MS = 300_000;

// HubSpot decodes these before hashing the URI (reference B5).
const decodedInUri: Record<string, string> = {
  '%3A': ':', '%2F': '/', '%3F': '?', '%40': '@', '%21': '!', '%24': '$', '%27': "'", '%28': '(', '%29': ')', '%2A': '*', '%2C': ',', '%3B': ';',
};

function hubspotUri(uri: string): string {
  return uri.replace(/%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)/gi, (m) => decodedInUri[m.toUpperCase()] ?? m);
}

export function signHubspotV3(input: { clientSecret: string; method: string; uri: string; body: string; timestamp: string }): string {
  return createHmac('sha256', input.clientSecret)
    .update(`${input.method.toUpperCase()}${hubspotUri(input.uri)}${input.body}${input.timestamp}`, 'utf8')
    .digest('base64');
}

export type SignatureCheck = { ok: true } | { ok: false; reason: string };

export function verifyHubspotV3(input: {
  clientSecret: string;
  method: string;
  /** The full URL HubSpot called: scheme, host, path and query. */
  uri: string;
  body: string;
  signature: string | undefined;
  timestamp: string | undefined;
  nowMs?: number;
}): SignatureCheck {
  if (!input.signature || !input.timestamp) return { ok: false, reason: 'missing X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp' };
  const ts = Number(input.timestamp);
  if (!Number.isFinite(ts)) return { ok: false, reason: 'the request timestamp is not a number' };
  if (Math.abs((input.nowMs ?? Date.now()) - ts) > HUBSPOT_SIGNATURE_MAX_AGE_MS) return { ok: false, reason: 'the request timestamp is older than 5 minutes' };
  const expected = signHubspotV3({ clientSecret: input.clientSecret, method: input.method, uri: input.uri, body: input.body, timestamp: input.timestamp });
  return constantTimeEqual(expected, input.signature) ? { ok: true } : { ok: false, reason: 'the signature does not match' };
}

/** Longest incoming chat message passed on to an agent; longer ones are cut. */
export const INCOMING_MESSAGE_MAX_CHARS = 100_000;

/** A chat message's text as an agent receives it: trimmed and capped, or null when nothing is left. */
export function incomingMessageText(value: unknown): string | null {
  const text = typeof value === 'string' ? value.trim() : '';
  return text.length === 0 ? null : text.slice(0, INCOMING_MESSAGE_MAX_CHARS);
}

const hubspotObjects: Record<string, CrmEntityType> = { contact: 'contacts', company: 'companies', deal: 'deals' };

const isId = (v: unknown): v is string | number => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) || (typeof v === 'string' && /^\d{1,30}$/.test(v));

/** HubSpot posts a JSON array of events; unknown subscription types are skipped. */
export function parseHubspotEvents(body: unknown): CrmWebhookEvent[] {
  if (!Array.isArray(body)) throw new WebhookPayloadError('HubSpot deliveries are a JSON array of events');
  const events: CrmWebhookEvent[] = [];
  for (const raw of body) {
    if (!raw || typeof raw !== 'object') throw new WebhookPayloadError('every event must be an object');
    const e = raw as Record<string, unknown>;
    if (e.subscriptionType === 'conversation.newMessage') {
      // `objectId` is the conversation thread. The event carries no text, so it only names the
      // message, which the intake reads through the API. Comments (internal notes), welcome
      // messages and thread status changes are not something the contact said.
      if (e.messageType !== 'MESSAGE' || !isId(e.objectId)) continue;
      if (typeof e.messageId !== 'string' || e.messageId.length === 0 || e.messageId.length > 200) continue;
      if (e.eventId === undefined) throw new WebhookPayloadError('an event has no eventId');
      events.push({
        dedupeKey: `hubspot:${String(e.eventId)}`,
        // The contact is known only once the thread is read; until then the event is about the thread.
        objectType: 'contacts',
        externalId: String(e.objectId),
        change: 'upsert',
        kind: 'conversation.newMessage',
        messageRef: { threadId: String(e.objectId), messageId: e.messageId },
      });
      continue;
    }
    const [object, action] = String(e.subscriptionType ?? '').split('.');
    const objectType = object ? hubspotObjects[object] : undefined;
    if (!objectType || !action || (typeof e.objectId !== 'number' && typeof e.objectId !== 'string')) continue;
    if (e.eventId === undefined) throw new WebhookPayloadError('an event has no eventId');
    events.push({
      dedupeKey: `hubspot:${String(e.eventId)}`,
      objectType,
      externalId: String(e.objectId),
      change: action === 'deletion' || action === 'privacyDeletion' ? 'delete' : 'upsert',
      kind: `${object}.${action}`,
      ...(objectType === 'deals' && (action === 'creation' || (action === 'propertyChange' && e.propertyName === 'dealstage')) ? { stageChange: true } : {}),
    });
  }
  return events;
}

export class WebhookPayloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookPayloadError';
  }
}

type Nested = { [key: string]: Nested | string };

/** PHP-style bracket keys (`leads[status][0][id]=1`) into nested objects. */
export function parseBracketForm(body: string): Nested {
  const root: Nested = {};
  for (const [key, value] of new URLSearchParams(body)) {
    const parts = key.match(/^[^[\]]+|\[[^[\]]*\]/g)?.map((p) => p.replace(/^\[|\]$/g, ''));
    if (!parts || parts.length === 0) continue;
    let node: Nested = root;
    for (const [i, part] of parts.entries()) {
      if (part === '__proto__' || part === 'constructor' || part === 'prototype') break;
      if (i === parts.length - 1) {
        node[part] = value;
      } else {
        const next = node[part];
        if (typeof next === 'object') node = next;
        else node = node[part] = {};
      }
    }
  }
  return root;
}

const kommoEntities: Record<string, CrmEntityType> = { leads: 'deals', contacts: 'contacts', companies: 'companies' };
const kommoActions = new Set(['add', 'update', 'delete', 'restore', 'status', 'responsible']);

/**
 * Kommo's form-encoded deliveries. Kommo sends no event id, so a change is identified by the
 * delivery's bytes plus its position: a redelivery of the same body is the same change.
 * Companies arrive under `contacts` with `type=company` (reference A5).
 */
export function parseKommoWebhook(rawBody: string): { accountId: string | null; events: CrmWebhookEvent[] } {
  const form = parseBracketForm(rawBody);
  const digest = createHash('sha256').update(rawBody, 'utf8').digest('hex').slice(0, 32);
  const events: CrmWebhookEvent[] = [];
  for (const [entity, actions] of Object.entries(form)) {
    const base = kommoEntities[entity];
    if (!base || typeof actions !== 'object') continue;
    for (const [action, items] of Object.entries(actions)) {
      if (!kommoActions.has(action) || typeof items !== 'object') continue;
      for (const [index, item] of Object.entries(items)) {
        if (typeof item !== 'object' || typeof item.id !== 'string' || !/^\d+$/.test(item.id)) continue;
        const objectType = base === 'contacts' && item.type === 'company' ? 'companies' : base;
        events.push({
          dedupeKey: `kommo:${digest}:${entity}:${action}:${index}`,
          objectType,
          externalId: item.id,
          change: action === 'delete' ? 'delete' : 'upsert',
          kind: `${entity}.${action}`,
          ...(objectType === 'deals' && (action === 'status' || action === 'add') ? { stageChange: true } : {}),
        });
      }
    }
  }
  // Chat messages (`message[add][i][…]`) about a lead: `entity_type=lead`, `entity_id`. Incoming
  // ones are the lead writing; outgoing ones are ours or a salesperson's (a handoff).
  const messages = form.message;
  const added = typeof messages === 'object' ? messages.add : undefined;
  if (typeof added === 'object') {
    for (const [index, item] of Object.entries(added)) {
      if (typeof item !== 'object' || item.entity_type !== 'lead') continue;
      if (item.type === 'outgoing') {
        const leadId = item.entity_id;
        if (typeof leadId !== 'string' || !/^\d+$/.test(leadId)) continue;
        const messageId = typeof item.id === 'string' && item.id.length > 0 && item.id.length <= 200 ? item.id : null;
        events.push({ dedupeKey: `kommo:${digest}:message:add:${index}`, objectType: 'deals', externalId: leadId, change: 'upsert', kind: 'message.outgoing', outgoing: { messageId } });
        continue;
      }
      if (item.type !== 'incoming') continue;
      const leadId = item.entity_id;
      const text = incomingMessageText(item.text);
      if (typeof leadId !== 'string' || !/^\d+$/.test(leadId) || text === null) continue;
      const talk = talkOf(item.talk_id, item.origin);
      events.push({
        dedupeKey: `kommo:${digest}:message:add:${index}`,
        objectType: 'deals',
        externalId: leadId,
        change: 'upsert',
        kind: 'message.add',
        message: { text, ...(talk ? { talk } : {}) },
      });
    }
  }
  const account = form.account;
  const accountId = typeof account === 'object' && typeof account.id === 'string' ? account.id : null;
  return { accountId, events };
}

/** The talk a Kommo chat message came in (`talk_id`, `origin`), which is where a reply goes back. */
function talkOf(talkId: unknown, origin: unknown): { talkId: string; origin: string | null } | null {
  if (typeof talkId !== 'string' || !/^\d{1,20}$/.test(talkId)) return null;
  origin = typeof origin === 'string' && origin.length > 0 ? origin.slice(0, 100) : null;
  return { talkId, origin: origin as string | null };
}
