/**
 * A fake HubSpot portal on loopback (reference crm-apis.md B6): `/oauth/v1/token` (form,
 * snake_case, `hub_id`, rotating single-use refresh tokens as a switch, `invalid_grant`),
 * 401 EXPIRED_AUTHENTICATION, object lists (limit ≤ 100, opaque `after`, `archived=true`),
 * search (`lastmodifieddate` vs `hs_lastmodifieddate`, GTE/BETWEEN, limit ≤ 200, `total`, 400
 * past 10,000), pipelines with string metadata, owners, notes/tasks with association ids,
 * deal PATCH, DELETE archiving, conversation threads and messages (conversations API v3: one
 * thread with its `associatedContactId`, one message with `type`, `direction`, `text`), a rolling
 * 10 s rate limit answered with RATE_LIMIT 429s and rate-limit headers (none on search), and
 * v3-signed webhook deliveries.
 */
import { randomBytes } from 'node:crypto';
import { signHubspotV3 } from '../../integrations/crm/webhooks.js';
import {
  bearer,
  FakeStore,
  FakeTokens,
  parseBody,
  seededRandom,
  SlidingWindow,
  startFakeHttp,
  type FakeContext,
  type FakeHttp,
  type FakeRecord,
  type InjectedFailure,
  type RecordedCrmRequest,
} from '../../scripts/stack/crm-fakes/common.js';

export interface HubspotFakeOptions {
  clientId?: string;
  clientSecret?: string;
  portalId?: number;
  accessTokenTtlSec?: number;
  rotateRefreshTokens?: boolean;
  /** Requests per window before 429 (110 per 10 s for OAuth apps); null for no limit. */
  rateLimit?: { max: number; windowMs: number } | null;
  dataset?: Partial<HubspotDatasetSize>;
  seed?: number;
  latencyMs?: number;
}

export interface HubspotDatasetSize {
  deals: number;
  contacts: number;
  companies: number;
  owners: number;
}

export interface FakeHubspot {
  url: string;
  clientId: string;
  clientSecret: string;
  portalId: number;
  store: FakeStore;
  tokens: FakeTokens;
  requests: RecordedCrmRequest[];
  engagements: Array<{ kind: 'notes' | 'tasks'; id: number; properties: Record<string, string>; associations: Array<{ toId: string; typeId: number }>; createdAtMs: number }>;
  injectFailure(failure: InjectedFailure): void;
  /** Ends every injected failure at once (an outage is over). */
  clearFailures(): void;
  setRateLimit(limit: { max: number; windowMs: number } | null): void;
  authorize(): string;
  addPrivateAppToken(token: string): void;
  updateObject(type: 'deals' | 'contacts' | 'companies', id: number, properties: Record<string, string>): void;
  archiveObject(type: 'deals' | 'contacts' | 'companies', id: number): void;
  addObject(type: 'deals' | 'contacts' | 'companies', properties: Record<string, string>): number;
  /** An open inbox thread with `contactId` (null: a visitor HubSpot has not matched to a contact); answers the thread id. */
  addConversationThread(opts: { contactId: number | null; spam?: boolean }): number;
  /**
   * A message on a thread; answers its id. INCOMING messages come from the thread's contact,
   * OUTGOING ones from the inbox (a rep, or an integration posting a reply); a COMMENT is an
   * internal note and has no direction.
   */
  addConversationMessage(threadId: number, message: { type?: 'MESSAGE'; direction: 'INCOMING' | 'OUTGOING'; text: string } | { type: 'COMMENT'; text: string }): string;
  /**
   * The thread's messages as the inbox shows them, oldest first: incoming from the contact,
   * outgoing from a rep (`clientType` HUBSPOT) or posted through the API (`INTEGRATION`).
   */
  threadMessages(threadId: number): Array<{ id: string; direction: 'INCOMING' | 'OUTGOING' | null; text: string; senderActorId: string | null; clientType: 'HUBSPOT' | 'INTEGRATION' }>;
  /** Called after a message posted through the API is stored and before the 201 is sent (crash tests kill the caller here). */
  onThreadMessageStored: ((threadId: number, messageId: string) => void) | null;
  /** The app id HubSpot stamps on messages our app posts (`client.integrationAppId`). */
  appId: number;
  /** A delivery as HubSpot would POST it to `targetUrl`, with v1 and v3 signature headers. */
  webhookDelivery(targetUrl: string, events: Array<Record<string, unknown>>, opts?: { timestampMs?: number; secret?: string }): { body: string; headers: Record<string, string> };
  apiRequests(): RecordedCrmRequest[];
  close(): Promise<void>;
}

const objectTypes = new Set(['deals', 'contacts', 'companies']);
const modifiedProperty = (type: string) => (type === 'contacts' ? 'lastmodifieddate' : 'hs_lastmodifieddate');
const associationTypes: Record<string, number[]> = { notes: [202, 190, 214], tasks: [204, 192, 216] };

export async function startFakeHubspot(options: HubspotFakeOptions = {}): Promise<FakeHubspot> {
  const clientId = options.clientId ?? 'hubspot-client-id';
  const clientSecret = options.clientSecret ?? 'hubspot-client-secret';
  const portalId = options.portalId ?? 4_400_001;
  const store = new FakeStore();
  const tokens = new FakeTokens({ accessTokenTtlSec: options.accessTokenTtlSec ?? 1800, rotateRefreshTokens: options.rotateRefreshTokens ?? true });
  let limiter = options.rateLimit === null ? null : new SlidingWindow(options.rateLimit?.max ?? 110, options.rateLimit?.windowMs ?? 10_000);
  const searchLimiter = new SlidingWindow(5, 1000);
  const engagements: FakeHubspot['engagements'] = [];
  let nextEngagementId = 80_000_000;
  type FakeMessage = {
    id: string;
    type: 'MESSAGE' | 'COMMENT';
    direction: 'INCOMING' | 'OUTGOING' | null;
    text: string;
    createdAtMs: number;
    /** Set on messages posted through the API: who sent them, as `A-<userId>`. */
    senderActorId?: string;
  };
  const appId = 7_700_001;
  // Messages posted through the API are stored in this order; the hook lets crash tests act after the store.
  const hooks: { onThreadMessageStored: FakeHubspot['onThreadMessageStored'] } = { onThreadMessageStored: null };
  const threads = new Map<number, { id: number; contactId: number | null; spam: boolean; createdAtMs: number; messages: Map<string, FakeMessage> }>();
  let nextThreadId = 9_100_000_000;
  const inboxId = '147000001';
  const chatChannelId = '1000';
  const chatChannelAccountId = '240000001';

  const size = { deals: 50, contacts: 20, companies: 10, owners: 3, ...options.dataset };
  const random = seededRandom(options.seed ?? 2);
  const baseMs = Date.now() - 30 * 86_400_000;
  const pipelines = [
    { id: 'default', label: 'Sales Pipeline', stages: ['appointmentscheduled', 'qualifiedtobuy', 'presentationscheduled', 'closedwon', 'closedlost'] },
    { id: '9001', label: 'Renewals', stages: ['9001-open', '9001-won', '9001-lost'] },
  ];
  const ownerIds: string[] = [];
  for (let i = 1; i <= size.owners; i++) {
    store.insert('owners', { email: `owner${i}@example.test`, firstName: `Owner`, lastName: `${i}` }, { id: 600 + i, atMs: baseMs });
    ownerIds.push(String(600 + i));
  }
  const pick = <T,>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!;
  const iso = (ms: number) => new Date(ms).toISOString();
  for (let i = 1; i <= size.companies; i++) store.insert('companies', { name: `Company ${i}`, domain: `company${i}.example`, hubspot_owner_id: pick(ownerIds) }, { id: 20_000 + i, atMs: baseMs + i });
  for (let i = 1; i <= size.contacts; i++) {
    store.insert('contacts', { firstname: `First${i}`, lastname: `Last${i}`, email: `contact${i}@example.test`, hubspot_owner_id: pick(ownerIds) }, { id: 30_000 + i, atMs: baseMs + i });
  }
  for (let i = 1; i <= size.deals; i++) {
    const p = pick(pipelines);
    store.insert('deals', { dealname: `Deal ${i}`, amount: String(Math.floor(random() * 100_000)), pipeline: p.id, dealstage: pick(p.stages), hubspot_owner_id: pick(ownerIds) }, { id: 100_000 + i, atMs: baseMs + i });
  }

  const toObject = (type: string, r: FakeRecord, wanted: string[] | null) => {
    const all: Record<string, string | null> = {
      ...(r.fields as Record<string, string>),
      hs_object_id: String(r.id),
      createdate: iso(r.createdAtMs),
      [modifiedProperty(type)]: iso(r.updatedAtMs),
    };
    // HubSpot returns only requested properties (null when empty), plus a few defaults.
    const properties: Record<string, string | null> = {};
    const keys = wanted ?? ['hs_object_id', 'createdate', modifiedProperty(type)];
    for (const k of new Set([...keys, 'hs_object_id', 'createdate', modifiedProperty(type)])) properties[k] = all[k] ?? null;
    return {
      id: String(r.id),
      properties,
      createdAt: iso(r.createdAtMs),
      updatedAt: iso(r.updatedAtMs),
      archived: r.deletedAtMs !== null,
      ...(r.deletedAtMs !== null ? { archivedAt: iso(r.deletedAtMs) } : {}),
    };
  };

  const error = (ctx: FakeContext, status: number, message: string, category: string, extra: Record<string, unknown> = {}) =>
    ctx.send(status, { status: 'error', message, correlationId: `corr-${Date.now()}`, category, ...extra });

  const encodeAfter = (offset: number) => Buffer.from(String(offset)).toString('base64url');
  const decodeAfter = (after: string | null) => (after ? Number(Buffer.from(after, 'base64url').toString('utf8')) || 0 : 0);

  const rateHeaders = (): Record<string, string> => (limiter ? { 'X-HubSpot-RateLimit-Interval-Milliseconds': String(limiter.windowMs), 'X-HubSpot-RateLimit-Max': String(limiter.max), 'X-HubSpot-RateLimit-Remaining': String(limiter.remaining()) } : {});

  const handler = async (ctx: FakeContext) => {
    const { req, url, body } = ctx;
    const path = url.pathname;
    const method = req.method ?? 'GET';

    // The install page: a real portal shows its account picker first; the fake consents at once
    // and sends the browser back to the app's redirect URI with a one-time code and the state.
    if (path === '/oauth/authorize' && method === 'GET') {
      if (url.searchParams.get('client_id') !== clientId) return ctx.send(400, { status: 'error', message: 'Unknown client id', category: 'VALIDATION_ERROR' });
      const redirect = url.searchParams.get('redirect_uri');
      if (!redirect) return ctx.send(400, { status: 'error', message: 'redirect_uri is required', category: 'VALIDATION_ERROR' });
      const to = new URL(redirect);
      to.searchParams.set('code', tokens.issueCode());
      const state = url.searchParams.get('state');
      if (state) to.searchParams.set('state', state);
      return ctx.send(302, undefined, { location: to.toString() });
    }
    if (path === '/oauth/v1/token' || path === '/oauth/v3/token') {
      if (method !== 'POST') return error(ctx, 405, 'Method not allowed', 'VALIDATION_ERROR');
      const form = parseBody(body, req.headers['content-type']);
      if (form.client_id !== clientId || form.client_secret !== clientSecret) return ctx.send(400, { status: 'BAD_CLIENT_ID', message: 'missing or unknown client id', error: 'invalid_client' });
      const issued =
        form.grant_type === 'authorization_code' ? tokens.exchange(String(form.code ?? '')) : form.grant_type === 'refresh_token' ? tokens.refreshWith(String(form.refresh_token ?? '')) : null;
      if (!issued) {
        return ctx.send(400, { error: 'invalid_grant', error_description: 'refresh token is invalid, expired or revoked', status: form.grant_type === 'refresh_token' ? 'BAD_REFRESH_TOKEN' : 'BAD_AUTH_CODE', message: 'missing or invalid grant' });
      }
      return ctx.send(200, { token_type: 'bearer', access_token: issued.accessToken, refresh_token: issued.refreshToken, expires_in: issued.expiresIn, hub_id: portalId, scopes: ['oauth', 'crm.objects.deals.read'] });
    }

    const auth = tokens.check(bearer(req.headers.authorization));
    if (auth === 'expired') return error(ctx, 401, 'The OAuth token used to make this call expired 1 second(s) ago.', 'EXPIRED_AUTHENTICATION');
    if (auth !== 'ok') return error(ctx, 401, 'Authentication credentials not found.', 'INVALID_AUTHENTICATION');

    const isSearch = method === 'POST' && /^\/crm\/v3\/objects\/\w+\/search$/.test(path);
    if (isSearch && !searchLimiter.take()) return ctx.send(429, { status: 'error', message: 'You have reached your secondly limit.', errorType: 'RATE_LIMIT', correlationId: 'c', policyName: 'SECONDLY', requestId: 'r' });
    if (limiter && !limiter.take()) {
      return ctx.send(429, { status: 'error', message: 'You have reached your ten_secondly_rolling limit.', errorType: 'RATE_LIMIT', correlationId: 'c', policyName: 'TEN_SECONDLY_ROLLING', requestId: 'r' }, isSearch ? {} : rateHeaders());
    }
    const ok = (status: number, payload: unknown) => ctx.send(status, payload, isSearch ? {} : rateHeaders());

    if (method === 'GET' && path === '/account-info/v3/details') return ok(200, { portalId, timeZone: 'UTC', currency: 'USD', uiDomain: 'app.hubspot.com' });
    if (method === 'GET' && path === '/crm/v3/pipelines/deals') {
      return ok(200, {
        results: pipelines.map((p, i) => ({
          id: p.id,
          label: p.label,
          displayOrder: i,
          archived: false,
          stages: p.stages.map((s, j) => ({ id: s, label: s, displayOrder: j, archived: false, metadata: { probability: String(j / p.stages.length), isClosed: String(/won|lost/.test(s)) } })),
        })),
      });
    }
    if (method === 'GET' && path === '/crm/v3/owners') {
      const limit = Math.min(500, Number(url.searchParams.get('limit') ?? 100));
      const offset = decodeAfter(url.searchParams.get('after'));
      const owners = store.liveById('owners');
      const slice = owners.slice(offset, offset + limit);
      return ok(200, {
        results: slice.map((o) => ({ id: String(o.id), ...o.fields, userId: o.id + 1000, createdAt: iso(o.createdAtMs), updatedAt: iso(o.updatedAtMs), archived: false })),
        ...(offset + limit < owners.length ? { paging: { next: { after: encodeAfter(offset + limit), link: '' } } } : {}),
      });
    }

    const conversation = /^\/conversations\/v3\/conversations\/threads\/(\d+)(?:\/messages(?:\/([^/]+))?)?$/.exec(path);
    if (conversation) {
      const thread = threads.get(Number(conversation[1]));
      if (!thread) return error(ctx, 404, `Thread ${conversation[1]} not found`, 'OBJECT_NOT_FOUND');
      const visitor = { actorId: `V-${thread.contactId ?? thread.id}`, name: thread.contactId === null ? 'Visitor' : `Contact ${thread.contactId}` };
      const rep = { actorId: `A-${ownerIds[0] ?? '601'}`, name: 'Owner 1' };
      const render = (message: FakeMessage) => {
        const common = {
          type: message.type,
          id: message.id,
          conversationsThreadId: String(thread.id),
          createdAt: iso(message.createdAtMs),
          updatedAt: iso(message.createdAtMs),
          client: message.senderActorId ? { clientType: 'INTEGRATION', integrationAppId: appId } : { clientType: 'HUBSPOT' },
          archived: false,
          text: message.text,
          richText: `<div>${message.text.replace(/[<>&]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[c]!)}</div>`,
          attachments: [],
        };
        if (message.type === 'COMMENT') return { ...common, createdBy: rep.actorId, senders: [rep] };
        const sender = message.senderActorId ? { actorId: message.senderActorId, name: 'Agent user' } : rep;
        const [from, to] = message.direction === 'INCOMING' ? [visitor, sender] : [sender, visitor];
        return {
          ...common,
          createdBy: from.actorId,
          senders: [from],
          recipients: [to],
          truncationStatus: 'NOT_TRUNCATED',
          status: { statusType: 'SENT' },
          direction: message.direction,
          channelId: chatChannelId,
          channelAccountId: chatChannelAccountId,
        };
      };
      const isMessages = path.endsWith('/messages');
      if (method === 'GET' && !isMessages && !conversation[2]) {
        const latest = Math.max(thread.createdAtMs, ...[...thread.messages.values()].map((x) => x.createdAtMs));
        return ok(200, {
          id: String(thread.id),
          createdAt: iso(thread.createdAtMs),
          status: 'OPEN',
          inboxId,
          ...(thread.contactId !== null ? { associatedContactId: String(thread.contactId) } : {}),
          originalChannelId: chatChannelId,
          originalChannelAccountId: chatChannelAccountId,
          latestMessageTimestamp: iso(latest),
          spam: thread.spam,
          archived: false,
        });
      }
      if (method === 'GET' && conversation[2]) {
        const message = thread.messages.get(decodeURIComponent(conversation[2]));
        if (!message) return error(ctx, 404, `Message ${conversation[2]} not found in thread ${thread.id}`, 'OBJECT_NOT_FOUND');
        return ok(200, render(message));
      }
      if (method === 'GET' && isMessages) {
        const limit = Math.min(500, Number(url.searchParams.get('limit') ?? 20));
        const offset = decodeAfter(url.searchParams.get('after'));
        const all = [...thread.messages.values()].sort((a, b) => a.createdAtMs - b.createdAtMs);
        if (url.searchParams.get('sort') === '-createdAt') all.reverse();
        const slice = all.slice(offset, offset + limit);
        return ok(200, { results: slice.map(render), ...(offset + limit < all.length ? { paging: { next: { after: encodeAfter(offset + limit), link: '' } } } : {}) });
      }
      if (method === 'POST' && isMessages) {
        // Validated as the public spec does (PublicConversationsMessageEgg); no deduplication: a
        // repeated POST is a second message, as on the real API.
        let egg: Record<string, unknown>;
        try {
          egg = JSON.parse(body) as Record<string, unknown>;
        } catch {
          return error(ctx, 400, 'Invalid JSON', 'VALIDATION_ERROR');
        }
        const missing = ['type', 'text', 'senderActorId', 'channelId', 'channelAccountId', 'recipients', 'attachments'].filter((k) => egg[k] === undefined);
        if (missing.length > 0) return error(ctx, 400, `Missing required fields: ${missing.join(', ')}`, 'VALIDATION_ERROR');
        if (egg.type !== 'MESSAGE' && egg.type !== 'COMMENT') return error(ctx, 400, 'type must be MESSAGE or COMMENT', 'VALIDATION_ERROR');
        if (typeof egg.text !== 'string' || egg.text.trim() === '' || egg.text.length > 65_536) return error(ctx, 400, 'text must be a non-empty string of at most 65536 characters', 'VALIDATION_ERROR');
        const actor = typeof egg.senderActorId === 'string' ? /^A-(\d+)$/.exec(egg.senderActorId) : null;
        if (!actor || !ownerIds.some((o) => String(Number(o) + 1000) === actor[1])) return error(ctx, 400, `senderActorId must be the agent actor of a user of this account (A-<userId>)`, 'VALIDATION_ERROR');
        if (egg.channelId !== chatChannelId || egg.channelAccountId !== chatChannelAccountId) return error(ctx, 400, 'channelId and channelAccountId must match the thread', 'VALIDATION_ERROR');
        if (!Array.isArray(egg.recipients) || !Array.isArray(egg.attachments)) return error(ctx, 400, 'recipients and attachments must be arrays', 'VALIDATION_ERROR');
        const id = randomBytes(16).toString('hex');
        const stored: FakeMessage = { id, type: egg.type, direction: egg.type === 'COMMENT' ? null : 'OUTGOING', text: egg.text, createdAtMs: Date.now(), senderActorId: actor[0] };
        thread.messages.set(id, stored);
        hooks.onThreadMessageStored?.(thread.id, id);
        return ok(201, render(stored));
      }
      return error(ctx, 405, `Method ${method} not allowed`, 'METHOD_NOT_ALLOWED');
    }

    const m = /^\/crm\/v3\/objects\/(\w+)(?:\/([^/]+))?$/.exec(path);
    const type = m?.[1];
    if (m && type && objectTypes.has(type) && method === 'GET' && !m[2]) {
      const limit = Number(url.searchParams.get('limit') ?? 10);
      if (limit > 100) return error(ctx, 400, 'limit must be at most 100', 'VALIDATION_ERROR');
      const archived = url.searchParams.get('archived') === 'true';
      const offset = decodeAfter(url.searchParams.get('after'));
      const wanted = url.searchParams.get('properties')?.split(',') ?? null;
      const items = archived ? store.deleted(type).sort((a, b) => a.id - b.id) : store.liveById(type);
      const slice = items.slice(offset, offset + limit);
      return ok(200, {
        results: slice.map((r) => toObject(type, r, wanted)),
        ...(offset + limit < items.length ? { paging: { next: { after: encodeAfter(offset + limit), link: `${http.url}${path}?after=${encodeAfter(offset + limit)}` } } } : {}),
      });
    }
    if (m && type && objectTypes.has(type) && m[2] === 'search' && method === 'POST') {
      const q = JSON.parse(body) as { filterGroups?: Array<{ filters: Array<{ propertyName: string; operator: string; value?: string; highValue?: string }> }>; limit?: number; after?: string; properties?: string[]; sorts?: unknown[] };
      const limit = q.limit ?? 10;
      const after = Number(q.after ?? 0);
      if (limit > 200) return error(ctx, 400, 'limit must be at most 200', 'VALIDATION_ERROR');
      if ((q.filterGroups?.length ?? 0) > 5) return error(ctx, 400, 'too many filter groups', 'VALIDATION_ERROR');
      if (after + limit > 10_000) return error(ctx, 400, 'Paging past 10,000 results is not supported', 'VALIDATION_ERROR');
      const prop = modifiedProperty(type);
      let items = store.live(type);
      const groups = q.filterGroups ?? [];
      if (groups.length > 0) {
        items = items.filter((r) =>
          groups.some((g) =>
            g.filters.every((f) => {
              if (f.propertyName !== prop) return true;
              const v = r.updatedAtMs;
              if (f.operator === 'GTE') return v >= Number(f.value);
              if (f.operator === 'GT') return v > Number(f.value);
              if (f.operator === 'LTE') return v <= Number(f.value);
              if (f.operator === 'BETWEEN') return v >= Number(f.value) && v <= Number(f.highValue);
              return true;
            }),
          ),
        );
      }
      items.sort((a, b) => a.updatedAtMs - b.updatedAtMs || a.id - b.id);
      const slice = items.slice(after, after + limit);
      return ok(200, {
        total: items.length,
        results: slice.map((r) => toObject(type, r, q.properties ?? null)),
        ...(after + limit < items.length ? { paging: { next: { after: String(after + limit) } } } : {}),
      });
    }
    if (m && type && objectTypes.has(type) && m[2] && method === 'GET') {
      const r = store.get(type, Number(m[2]));
      if (!r) return error(ctx, 404, 'Object not found', 'OBJECT_NOT_FOUND');
      return ok(200, toObject(type, r, url.searchParams.get('properties')?.split(',') ?? null));
    }
    if (m && type === 'deals' && m[2] && method === 'PATCH') {
      const id = Number(m[2]);
      if (!store.get('deals', id)) return error(ctx, 404, 'Object not found', 'OBJECT_NOT_FOUND');
      const patch = JSON.parse(body) as { properties?: Record<string, string> };
      const r = store.update('deals', id, patch.properties ?? {});
      return ok(200, toObject('deals', r, ['dealname', 'dealstage', 'pipeline', 'hubspot_owner_id']));
    }
    if (m && type && objectTypes.has(type) && m[2] && method === 'DELETE') {
      if (!store.get(type, Number(m[2]))) return error(ctx, 404, 'Object not found', 'OBJECT_NOT_FOUND');
      store.remove(type, Number(m[2]));
      return ctx.send(204);
    }
    if (m && (type === 'notes' || type === 'tasks') && m[2] === 'search' && method === 'POST') {
      // Only what findRecentWrite sends: associations.<type> EQ id and hs_createdate GTE ms.
      const q = JSON.parse(body) as { filterGroups?: Array<{ filters: Array<{ propertyName: string; operator: string; value?: string }> }>; properties?: string[] };
      const filters = q.filterGroups?.[0]?.filters ?? [];
      const typeIds: Record<string, number> = type === 'notes' ? { contact: 202, company: 190, deal: 214 } : { contact: 204, company: 192, deal: 216 };
      const items = engagements.filter(
        (e) =>
          e.kind === type &&
          filters.every((f) => {
            const assoc = /^associations\.(\w+)$/.exec(f.propertyName);
            if (assoc) return e.associations.some((a) => a.toId === f.value && a.typeId === typeIds[assoc[1]!]);
            if (f.propertyName === 'hs_createdate' && f.operator === 'GTE') return e.createdAtMs >= Number(f.value);
            return true;
          }),
      );
      return ctx.send(200, {
        total: items.length,
        results: items.slice(0, 100).map((e) => ({ id: String(e.id), properties: { ...e.properties, hs_createdate: iso(e.createdAtMs) }, createdAt: iso(e.createdAtMs), updatedAt: iso(e.createdAtMs), archived: false })),
      });
    }
    if (m && (type === 'notes' || type === 'tasks') && !m[2] && method === 'POST') {
      const input = JSON.parse(body) as { properties?: Record<string, string>; associations?: Array<{ to: { id: string }; types: Array<{ associationTypeId: number }> }> };
      if (!input.properties?.hs_timestamp) return error(ctx, 400, 'Property values were not valid: hs_timestamp is required', 'VALIDATION_ERROR');
      const associations = (input.associations ?? []).flatMap((a) => a.types.map((t) => ({ toId: a.to.id, typeId: t.associationTypeId })));
      if (associations.some((a) => !associationTypes[type]!.includes(a.typeId))) return error(ctx, 400, 'invalid association type', 'VALIDATION_ERROR');
      const id = nextEngagementId++;
      engagements.push({ kind: type, id, properties: input.properties, associations, createdAtMs: Date.now() });
      const now = new Date().toISOString();
      return ok(201, { id: String(id), properties: { ...input.properties, hs_object_id: String(id) }, createdAt: now, updatedAt: now, archived: false });
    }
    return error(ctx, 404, `No route ${method} ${path}`, 'OBJECT_NOT_FOUND');
  };

  const isApiPath = (p: string) => p.startsWith('/crm/') || p.startsWith('/account-info/') || p.startsWith('/conversations/');
  const http: FakeHttp = await startFakeHttp(handler, { isApiPath, ...(options.latencyMs ? { latencyMs: () => options.latencyMs! } : {}) });

  return {
    url: http.url,
    clientId,
    clientSecret,
    portalId,
    store,
    tokens,
    requests: http.requests,
    engagements,
    injectFailure: (f) => http.failures.push(f),
    clearFailures: () => void http.failures.splice(0),
    setRateLimit: (limit) => {
      limiter = limit === null ? null : new SlidingWindow(limit.max, limit.windowMs);
    },
    authorize: () => tokens.issueCode(),
    addPrivateAppToken: (token) => tokens.addStaticToken(token),
    updateObject: (type, id, properties) => void store.update(type, id, properties),
    archiveObject: (type, id) => store.remove(type, id),
    addObject: (type, properties) => store.insert(type, properties).id,
    appId,
    get onThreadMessageStored() {
      return hooks.onThreadMessageStored;
    },
    set onThreadMessageStored(fn) {
      hooks.onThreadMessageStored = fn;
    },
    threadMessages: (threadId) =>
      [...(threads.get(threadId)?.messages.values() ?? [])]
        .sort((a, b) => a.createdAtMs - b.createdAtMs)
        .map((m) => ({ id: m.id, direction: m.direction, text: m.text, senderActorId: m.senderActorId ?? null, clientType: m.senderActorId ? ('INTEGRATION' as const) : ('HUBSPOT' as const) })),
    addConversationThread: ({ contactId, spam = false }) => {
      const id = nextThreadId++;
      threads.set(id, { id, contactId, spam, createdAtMs: Date.now(), messages: new Map() });
      return id;
    },
    addConversationMessage: (threadId, message) => {
      const thread = threads.get(threadId);
      if (!thread) throw new Error(`the fake has no conversation thread ${threadId}`);
      const id = randomBytes(16).toString('hex');
      const direction = message.type === 'COMMENT' ? null : message.direction;
      thread.messages.set(id, { id, type: message.type ?? 'MESSAGE', direction, text: message.text, createdAtMs: Date.now() });
      return id;
    },
    webhookDelivery: (targetUrl, events, opts = {}) => {
      const body = JSON.stringify(events.map((e, i) => ({ eventId: 1000 + i, subscriptionId: 1, portalId, appId: 1, occurredAt: Date.now(), attemptNumber: 0, changeSource: 'CRM', ...e })));
      const timestamp = String(opts.timestampMs ?? Date.now());
      const secret = opts.secret ?? clientSecret;
      return {
        body,
        headers: {
          'content-type': 'application/json',
          'x-hubspot-request-timestamp': timestamp,
          'x-hubspot-signature-v3': signHubspotV3({ clientSecret: secret, method: 'POST', uri: targetUrl, body, timestamp }),
        },
      };
    },
    apiRequests: () => http.requests.filter((r) => isApiPath(r.path)),
    close: () => http.close(),
  };
}
