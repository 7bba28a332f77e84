/**
 * A fake Kommo/amoCRM v4 account on loopback (reference crm-apis.md A6): OAuth (a consent stub
 * that redirects with code/referer/state, `/oauth2/access_token` taking JSON or form, rotating
 * single-use refresh tokens, expiring access tokens, long-lived tokens), HAL+JSON lists with
 * page/limit (max 250) and `_links.next`, `204` for empty lists, `filter[updated_at][from]`,
 * the deletion events feed, notes/tasks/stage writes, 429s when over the per-second limit and
 * problem+json errors. Datasets of any size are generated deterministically.
 */
import {
  bearer,
  FakeStore,
  FakeTokens,
  parseBody,
  seededRandom,
  SlidingWindow,
  startFakeHttp,
  type FakeContext,
  type FakeRecord,
  type FakeHttp,
  type InjectedFailure,
  type RecordedCrmRequest,
} from './common.js';
import { FakeKommoTalks, type FakeKommoTalksOptions } from './kommo-talks.js';

export interface KommoFakeOptions {
  clientId?: string;
  clientSecret?: string;
  accountId?: number;
  accessTokenTtlSec?: number;
  rotateRefreshTokens?: boolean;
  /** Requests per second before 429 (Kommo documents 7); null for no limit. */
  rateLimitPerSecond?: number | null;
  /** `retry_after` seconds in the 429 body. */
  retryAfterSec?: number;
  dataset?: Partial<KommoDatasetSize>;
  seed?: number;
  latencyMs?: number;
  /** The Chats API add-on: monthly `send_message` quota and whether the scope is granted. */
  talks?: FakeKommoTalksOptions;
  /** Listen on this port (default: any free one). */
  port?: number;
  /** The integration's registered Redirect URI, where the consent page sends the browser. */
  redirectUri?: string;
  /** Routes of the dev sandbox (scripts/stack/sandbox-crm.ts), tried before Kommo's own; true when answered. */
  extraRoutes?: (ctx: FakeContext) => boolean | Promise<boolean>;
}

export interface KommoDatasetSize {
  leads: number;
  contacts: number;
  companies: number;
  users: number;
}

export interface FakeKommo {
  url: string;
  /** What the real account host looks like in the OAuth `referer` (host:port here). */
  referer: string;
  clientId: string;
  clientSecret: string;
  accountId: number;
  store: FakeStore;
  tokens: FakeTokens;
  requests: RecordedCrmRequest[];
  notes: Array<{ entityType: string; entityId: number; text: string; id: number; createdAtMs: number }>;
  tasks: Array<{ entityType: string; entityId: number; text: string; id: number; completeTill: number; createdAtMs: number; responsibleUserId?: number }>;
  /** Called after a note is stored and before the response is sent (crash tests kill the caller here). */
  onNoteStored: ((note: FakeKommo['notes'][number]) => void) | null;
  pipelines: Array<{ id: number; name: string; statuses: Array<{ id: number; name: string }> }>;
  injectFailure(failure: InjectedFailure): void;
  /** Ends every injected failure at once (an outage is over). */
  clearFailures(): void;
  setRateLimit(perSecond: number | null): void;
  /** Issues an authorization code, as the consent screen would. */
  authorize(): string;
  /** The integration's registered Redirect URI (settable: a test learns its app's port late). */
  redirectUri: string;
  addLongLivedToken(token: string): void;
  /** Simulates an edit in the Kommo UI. */
  updateLead(id: number, fields: Record<string, unknown>): void;
  deleteLead(id: number): void;
  addLead(fields: Record<string, unknown>): number;
  /** Talks (lead chats), `send_message` with its quota, and Salesbots (scripts/stack/crm-fakes/kommo-talks.ts). */
  talks: FakeKommoTalks;
  apiRequests(): RecordedCrmRequest[];
  close(): Promise<void>;
}

const entityKeys: Record<string, string> = { leads: 'leads', contacts: 'contacts', companies: 'companies', users: 'users' };
const deletionEventTypes: Record<string, string> = { lead_deleted: 'leads', contact_deleted: 'contacts', company_deleted: 'companies' };

export async function startFakeKommo(options: KommoFakeOptions = {}): Promise<FakeKommo> {
  const clientId = options.clientId ?? 'kommo-client-id';
  const clientSecret = options.clientSecret ?? 'kommo-client-secret';
  const accountId = options.accountId ?? 31_000_001;
  const store = new FakeStore();
  const tokens = new FakeTokens({ accessTokenTtlSec: options.accessTokenTtlSec ?? 86_400, rotateRefreshTokens: options.rotateRefreshTokens ?? true });
  let limiter = options.rateLimitPerSecond === null ? null : new SlidingWindow(options.rateLimitPerSecond ?? 7, 1000);
  const notes: FakeKommo['notes'] = [];
  let redirectUri = options.redirectUri ?? 'http://127.0.0.1/callback';
  let onNoteStored: FakeKommo['onNoteStored'] = null;
  const talks = new FakeKommoTalks(options.talks);
  const tasks: FakeKommo['tasks'] = [];
  let nextWriteId = 9_000_000;

  // Deterministic dataset: ids, names and modification times depend only on the seed and sizes.
  const size: KommoDatasetSize = { leads: 50, contacts: 20, companies: 10, users: 3, ...options.dataset };
  const random = seededRandom(options.seed ?? 1);
  const baseMs = Date.now() - 30 * 86_400_000;
  const pipelines = [
    { id: 7001, name: 'Sales', statuses: [{ id: 70011, name: 'Incoming' }, { id: 70012, name: 'Qualified' }, { id: 70013, name: 'Proposal' }, { id: 142, name: 'Won' }, { id: 143, name: 'Lost' }] },
    { id: 7002, name: 'Partners', statuses: [{ id: 70021, name: 'New' }, { id: 70022, name: 'Active' }, { id: 142, name: 'Won' }, { id: 143, name: 'Lost' }] },
  ];
  for (let i = 1; i <= size.users; i++) store.insert('users', { name: `User ${i}`, email: `user${i}@example.test` }, { id: 500 + i, atMs: baseMs });
  const userIds = [...store.table('users').keys()];
  const pick = <T,>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!;
  // Modification times are spread one second apart in the past, so updated_at filters (seconds) are meaningful.
  for (let i = 1; i <= size.companies; i++) {
    store.insert('companies', { name: `Company ${i}`, responsible_user_id: pick(userIds), custom_fields_values: null }, { id: 200_000 + i, atMs: baseMs + i * 1000 });
  }
  for (let i = 1; i <= size.contacts; i++) {
    store.insert(
      'contacts',
      {
        name: `Contact ${i}`,
        first_name: `First${i}`,
        last_name: `Last${i}`,
        responsible_user_id: pick(userIds),
        custom_fields_values: [{ field_id: 1, field_name: 'Email', field_code: 'EMAIL', field_type: 'multitext', values: [{ value: `contact${i}@example.test`, enum_code: 'WORK' }] }],
      },
      { id: 300_000 + i, atMs: baseMs + i * 1000 },
    );
  }
  for (let i = 1; i <= size.leads; i++) {
    const pipeline = pick(pipelines);
    store.insert(
      'leads',
      { name: `Lead ${i}`, price: Math.floor(random() * 100_000), responsible_user_id: pick(userIds), pipeline_id: pipeline.id, status_id: pick(pipeline.statuses).id, custom_fields_values: null },
      { id: 1_000_000 + i, atMs: baseMs + i * 1000 },
    );
  }

  const problem = (ctx: FakeContext, status: number, title: string, detail: string, extra: Record<string, unknown> = {}) =>
    ctx.send(status, { title, type: `https://httpstatus.es/${status}`, status, detail, ...extra }, { 'content-type': 'application/problem+json' });

  const toEntity = (type: string, r: FakeRecord) => ({
    id: r.id,
    ...r.fields,
    created_at: Math.floor(r.createdAtMs / 1000),
    updated_at: Math.floor(r.updatedAtMs / 1000),
    account_id: accountId,
    _links: { self: { href: `${http.url}/api/v4/${type}/${r.id}` } },
  });

  const handler = async (ctx: FakeContext) => {
    const { req, url, body } = ctx;
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (options.extraRoutes && (await options.extraRoutes(ctx))) return;

    if (path === '/oauth' && method === 'GET') {
      const code = tokens.issueCode();
      // Kommo sends the browser to the Redirect URI registered with the integration.
      const to = new URL(url.searchParams.get('redirect_uri') ?? redirectUri);
      to.searchParams.set('code', code);
      to.searchParams.set('referer', referer);
      to.searchParams.set('client_id', clientId);
      const state = url.searchParams.get('state');
      if (state) to.searchParams.set('state', state);
      return ctx.send(302, undefined, { location: to.toString() });
    }
    if (path === '/oauth2/access_token' && method === 'POST') {
      const form = parseBody(body, req.headers['content-type']);
      if (form.client_id !== clientId || form.client_secret !== clientSecret) return problem(ctx, 401, 'Unauthorized', 'Client authentication failed', { hint: 'invalid_client' });
      const issued =
        form.grant_type === 'authorization_code' ? tokens.exchange(String(form.code ?? '')) : form.grant_type === 'refresh_token' ? tokens.refreshWith(String(form.refresh_token ?? '')) : null;
      if (!issued) return problem(ctx, 400, 'Bad Request', 'The authorization grant is invalid, expired or revoked', { hint: 'Token has been revoked' });
      return ctx.send(200, { token_type: 'Bearer', expires_in: issued.expiresIn, access_token: issued.accessToken, refresh_token: issued.refreshToken, server_time: Math.floor(Date.now() / 1000) });
    }
    if (!path.startsWith('/api/v4/')) return ctx.send(404, '<html><body>404 Not Found</body></html>');

    const auth = tokens.check(bearer(req.headers.authorization));
    if (auth !== 'ok') return problem(ctx, 401, 'Unauthorized', auth === 'expired' ? 'Token has expired' : 'Unauthorized');
    if (limiter && !limiter.take()) return ctx.send(429, { title: 'Too Many Requests', status: 429, retry_after: options.retryAfterSec ?? 1 });

    const segments = path.slice('/api/v4/'.length).split('/');
    const page = Math.max(1, Number(url.searchParams.get('page') ?? 1));
    const limit = Math.min(250, Math.max(1, Number(url.searchParams.get('limit') ?? 50)));

    const listResponse = (type: string, key: string, items: unknown[], total: number) => {
      if (items.length === 0) return ctx.send(204);
      const self = new URL(url.toString().replace('http://127.0.0.1', http.url));
      const links: Record<string, { href: string }> = { self: { href: self.toString() } };
      if (page * limit < total) {
        self.searchParams.set('page', String(page + 1));
        links.next = { href: self.toString() };
      }
      return ctx.send(200, { _page: page, _links: links, _embedded: { [key]: items } }, { 'content-type': 'application/hal+json' });
    };

    if (method === 'GET' && path === '/api/v4/account') return ctx.send(200, { id: accountId, name: 'Fake account', subdomain: 'fake' });

    if (method === 'GET' && path === '/api/v4/leads/pipelines') {
      return ctx.send(200, {
        _total_items: pipelines.length,
        _embedded: {
          pipelines: pipelines.map((p, i) => ({
            id: p.id,
            name: p.name,
            sort: i + 1,
            is_main: i === 0,
            _embedded: { statuses: p.statuses.map((s, j) => ({ id: s.id, name: s.name, sort: j * 10, pipeline_id: p.id, is_editable: s.id !== 142 && s.id !== 143, type: j === 0 ? 1 : 0 })) },
          })),
        },
      });
    }

    if (method === 'GET' && path === '/api/v4/events') {
      const types = (url.searchParams.get('filter[type]') ?? '').split(',').filter(Boolean);
      const from = Number(url.searchParams.get('filter[created_at][from]') ?? 0) * 1000;
      const events = types
        .flatMap((t) => {
          const table = deletionEventTypes[t];
          return table ? store.deleted(table).map((r) => ({ t, r })) : [];
        })
        .filter(({ r }) => (r.deletedAtMs ?? 0) >= from)
        .sort((a, b) => a.r.deletedAtMs! - b.r.deletedAtMs! || a.r.id - b.r.id);
      const slice = events.slice((page - 1) * limit, page * limit).map(({ t, r }) => ({
        id: `ev-${t}-${r.id}`,
        type: t,
        entity_id: r.id,
        entity_type: deletionEventTypes[t]!.replace(/s$/, ''),
        created_by: 0,
        created_at: Math.floor(r.deletedAtMs! / 1000),
        value_before: [],
        value_after: [],
        account_id: accountId,
      }));
      return listResponse('events', 'events', slice, events.length);
    }

    const type = segments[0]!;
    const updatedFrom = Number(url.searchParams.get('filter[updated_at][from]') ?? 0);
    if (method === 'GET' && segments.length === 3 && segments[2] === 'notes' && ['leads', 'contacts', 'companies'].includes(type)) {
      const entityId = Number(segments[1]);
      const noteType = url.searchParams.get('filter[note_type]');
      const items = notes
        .filter((n) => n.entityType === type && n.entityId === entityId && Math.floor(n.createdAtMs / 1000) >= updatedFrom && (!noteType || noteType === 'common'))
        .map((n) => ({ id: n.id, entity_id: n.entityId, note_type: 'common', params: { text: n.text }, created_at: Math.floor(n.createdAtMs / 1000), updated_at: Math.floor(n.createdAtMs / 1000), account_id: accountId }));
      return listResponse('notes', 'notes', items.slice((page - 1) * limit, page * limit), items.length);
    }
    if (method === 'GET' && path === '/api/v4/tasks') {
      const entityType = url.searchParams.get('filter[entity_type]');
      const entityIds = url.searchParams.getAll('filter[entity_id][]').map(Number);
      const items = tasks
        .filter((t) => (!entityType || t.entityType === entityType) && (entityIds.length === 0 || entityIds.includes(t.entityId)) && Math.floor(t.createdAtMs / 1000) >= updatedFrom)
        .map((t) => ({ id: t.id, entity_id: t.entityId, entity_type: t.entityType, text: t.text, complete_till: t.completeTill, created_at: Math.floor(t.createdAtMs / 1000), updated_at: Math.floor(t.createdAtMs / 1000), account_id: accountId }));
      return listResponse('tasks', 'tasks', items.slice((page - 1) * limit, page * limit), items.length);
    }
    if (method === 'GET' && entityKeys[type] && segments.length === 1) {
      let items = store.liveById(type);
      const from = url.searchParams.get('filter[updated_at][from]');
      if (from !== null) items = items.filter((r) => Math.floor(r.updatedAtMs / 1000) >= Number(from));
      if (url.searchParams.get('order[updated_at]')) items = [...items].sort((a, b) => a.updatedAtMs - b.updatedAtMs || a.id - b.id);
      const slice = items.slice((page - 1) * limit, page * limit).map((r) => toEntity(type, r));
      return listResponse(type, entityKeys[type]!, slice, items.length);
    }
    if (method === 'GET' && entityKeys[type] && segments.length === 2) {
      const r = store.get(type, Number(segments[1]));
      if (!r) return ctx.send(204);
      return ctx.send(200, toEntity(type, r), { 'content-type': 'application/hal+json' });
    }
    if (method === 'POST' && segments.length === 2 && segments[1] === 'notes' && ['leads', 'contacts', 'companies'].includes(type)) {
      const items = JSON.parse(body) as Array<{ entity_id: number; note_type: string; params?: { text?: string } }>;
      const created = items.map((item) => {
        if (!store.get(type, item.entity_id)) return null;
        const id = nextWriteId++;
        const note = { entityType: type, entityId: item.entity_id, text: item.params?.text ?? '', id, createdAtMs: Date.now() };
        notes.push(note);
        onNoteStored?.(note);
        return { id, entity_id: item.entity_id, request_id: '0' };
      });
      if (created.some((c) => c === null)) return problem(ctx, 400, 'Bad Request', 'Request validation failed', { 'validation-errors': [{ request_id: '0', errors: [{ code: 'NotFound', path: 'entity_id', detail: 'Entity not found' }] }] });
      return ctx.send(200, { _links: {}, _embedded: { notes: created } });
    }
    if (method === 'POST' && path === '/api/v4/tasks') {
      const items = JSON.parse(body) as Array<{ text?: string; complete_till?: number; entity_id: number; entity_type: string; responsible_user_id?: number }>;
      if (items.some((i) => !i.text || !i.complete_till)) {
        return problem(ctx, 400, 'Bad Request', 'Request validation failed', { 'validation-errors': [{ request_id: '0', errors: [{ code: 'NotBlank', path: 'text', detail: 'This value should not be blank.' }] }] });
      }
      const created = items.map((item) => {
        const id = nextWriteId++;
        tasks.push({
          entityType: item.entity_type,
          entityId: item.entity_id,
          text: item.text!,
          id,
          completeTill: item.complete_till!,
          createdAtMs: Date.now(),
          ...(item.responsible_user_id !== undefined ? { responsibleUserId: item.responsible_user_id } : {}),
        });
        return { id, request_id: '0' };
      });
      return ctx.send(200, { _links: {}, _embedded: { tasks: created } });
    }
    if (talks.handle(ctx, method, segments, (id) => store.get('leads', id) !== undefined, problem)) return;
    if (method === 'PATCH' && type === 'leads' && segments.length === 2) {
      const id = Number(segments[1]);
      if (!store.get('leads', id)) return problem(ctx, 404, 'Not Found', 'Lead not found');
      const patch = JSON.parse(body) as Record<string, unknown>;
      // Custom field values (`[{field_id, values: [{value}]}]`), which a Salesbot step can send.
      if (Array.isArray(patch.custom_fields_values)) {
        for (const f of patch.custom_fields_values as Array<{ field_id?: unknown; values?: Array<{ value?: unknown }> }>) {
          if (typeof f.field_id !== 'number' || typeof f.values?.[0]?.value !== 'string') return problem(ctx, 400, 'Bad Request', 'custom_fields_values: field_id and values[0].value are required');
          talks.setLeadField(id, f.field_id, f.values[0].value);
        }
      }
      const allowed = Object.fromEntries(Object.entries(patch).filter(([k]) => ['status_id', 'pipeline_id', 'name', 'price', 'responsible_user_id'].includes(k)));
      const r = store.update('leads', id, allowed);
      return ctx.send(200, { id, updated_at: Math.floor(r.updatedAtMs / 1000), _links: { self: { href: `${http.url}/api/v4/leads/${id}` } } });
    }
    return problem(ctx, 404, 'Not Found', `No route ${method} ${path}`);
  };

  const http: FakeHttp = await startFakeHttp(handler, { isApiPath: (p) => p.startsWith('/api/v4/'), ...(options.latencyMs ? { latencyMs: () => options.latencyMs! } : {}), ...(options.port !== undefined ? { port: options.port } : {}) });
  const referer = `127.0.0.1:${http.port}`;

  return {
    url: http.url,
    referer,
    clientId,
    clientSecret,
    accountId,
    store,
    tokens,
    requests: http.requests,
    notes,
    tasks,
    get onNoteStored() {
      return onNoteStored;
    },
    set onNoteStored(hook) {
      onNoteStored = hook;
    },
    pipelines,
    injectFailure: (f) => http.failures.push(f),
    clearFailures: () => void http.failures.splice(0),
    setRateLimit: (perSecond) => {
      limiter = perSecond === null ? null : new SlidingWindow(perSecond, 1000);
    },
    authorize: () => tokens.issueCode(),
    get redirectUri() {
      return redirectUri;
    },
    set redirectUri(uri) {
      redirectUri = uri;
    },
    addLongLivedToken: (token) => tokens.addStaticToken(token),
    updateLead: (id, fields) => void store.update('leads', id, fields),
    deleteLead: (id) => store.remove('leads', id),
    addLead: (fields) => store.insert('leads', { custom_fields_values: null, ...fields }).id,
    talks,
    apiRequests: () => http.requests.filter((r) => r.path.startsWith('/api/v4/')),
    close: () => http.close(),
  };
}
