/**
 * Kommo / amoCRM API v4 adapter. Wire details and their sources: shared reference
 * crm-apis.md part A. Quirks handled here: `204 No Content` for an empty list, `null` instead of
 * `[]` for missing custom fields, unix-second timestamps, companies and contacts as separate
 * lists, deletions only visible through the events feed.
 */
import { KommoTalkMessenger } from './messaging/kommo-talk.js';
import type { CrmMessenger, MessagingSettings } from './messaging/types.js';
import { z } from 'zod';
import { adapterHttpClient, CrmError, CrmHttpClient, grantRejected, oauthGrantFields, type CrmAdapterOptions } from './http.js';
import type {
  CrmAdapter,
  CrmDeletionsPage,
  CrmEntityType,
  CrmObjectType,
  CrmPage,
  CrmRecord,
  CrmTarget,
  OAuthApp,
  PageRequest,
  TokenGrant,
  TokenSet,
} from './types.js';

export const KOMMO_MAX_PAGE = 250;

const customFields = z
  .array(
    z.looseObject({
      field_id: z.number(),
      field_code: z.string().nullish(),
      field_name: z.string().nullish(),
      values: z.array(z.looseObject({ value: z.unknown() })),
    }),
  )
  .nullish();

const entity = z.looseObject({
  id: z.number().int(),
  name: z.string().nullish(),
  updated_at: z.number().int().nullish(),
  responsible_user_id: z.number().int().nullish(),
  status_id: z.number().int().nullish(),
  pipeline_id: z.number().int().nullish(),
  email: z.string().nullish(),
  custom_fields_values: customFields,
});
type KommoEntity = z.infer<typeof entity>;

const listEnvelope = (key: string) =>
  z.looseObject({
    _page: z.number().int().optional(),
    _links: z.looseObject({ next: z.object({ href: z.string() }).optional() }).optional(),
    _embedded: z.looseObject({ [key]: z.array(entity) }),
  });

const eventsEnvelope = z.looseObject({
  _links: z.looseObject({ next: z.object({ href: z.string() }).optional() }).optional(),
  _embedded: z.object({ events: z.array(z.looseObject({ id: z.string(), type: z.string(), entity_id: z.number().int() })) }),
});

const tokenResponse = z.looseObject({
  token_type: z.string(),
  access_token: z.string().min(1),
  refresh_token: z.string().min(1),
  expires_in: z.number().int().positive(),
});

const createdEnvelope = (key: string) => z.looseObject({ _embedded: z.looseObject({ [key]: z.array(z.looseObject({ id: z.number().int() })).min(1) }) });

const notesEnvelope = z.looseObject({
  _links: z.looseObject({ next: z.object({ href: z.string() }).optional() }).optional(),
  _embedded: z.looseObject({
    notes: z.array(z.looseObject({ id: z.number().int(), created_at: z.number().int(), params: z.looseObject({ text: z.string().nullish() }).nullish() })),
  }),
});
const tasksEnvelope = z.looseObject({
  _links: z.looseObject({ next: z.object({ href: z.string() }).optional() }).optional(),
  _embedded: z.looseObject({ tasks: z.array(z.looseObject({ id: z.number().int(), created_at: z.number().int(), text: z.string().nullish() })) }),
});

/** Pages a write lookup reads at most (a record rarely gets hundreds of notes in the retry window). */
const FIND_WRITE_MAX_PAGES = 4;

// Our object types → Kommo's list paths and `_embedded` keys.
const paths: Record<CrmObjectType, { path: string; key: string; pagedUpdatedFilter: boolean }> = {
  pipelines: { path: '/api/v4/leads/pipelines', key: 'pipelines', pagedUpdatedFilter: false },
  users: { path: '/api/v4/users', key: 'users', pagedUpdatedFilter: false },
  companies: { path: '/api/v4/companies', key: 'companies', pagedUpdatedFilter: true },
  contacts: { path: '/api/v4/contacts', key: 'contacts', pagedUpdatedFilter: true },
  deals: { path: '/api/v4/leads', key: 'leads', pagedUpdatedFilter: true },
};

const entityPaths: Record<CrmEntityType, string> = { contacts: 'contacts', companies: 'companies', deals: 'leads' };
const deletionEvents: Partial<Record<CrmObjectType, string>> = {
  deals: 'lead_deleted',
  contacts: 'contact_deleted',
  companies: 'company_deleted',
};

function emailOf(e: KommoEntity): string | null {
  if (e.email) return e.email;
  const field = e.custom_fields_values?.find((f) => f.field_code === 'EMAIL');
  const value = field?.values[0]?.value;
  return typeof value === 'string' ? value : null;
}

export function kommoRecord(objectType: CrmObjectType, e: KommoEntity): CrmRecord {
  const { id, name, updated_at, responsible_user_id, status_id, pipeline_id, ...rest } = e;
  return {
    objectType,
    externalId: String(id),
    name: name ?? null,
    email: emailOf(e),
    // A pipeline's own id is its pipeline; stages ride along in properties._embedded.statuses.
    pipelineId: objectType === 'pipelines' ? String(id) : pipeline_id != null ? String(pipeline_id) : null,
    stageId: status_id != null ? String(status_id) : null,
    ownerId: responsible_user_id != null ? String(responsible_user_id) : null,
    updatedAt: updated_at != null ? new Date(updated_at * 1000) : null,
    properties: { ...rest, ...(updated_at != null ? { updated_at } : {}) },
  };
}

function pageNumber(cursor: string | null): number {
  if (cursor === null) return 1;
  const n = Number(cursor);
  if (!Number.isInteger(n) || n < 1) throw new CrmError('kommo', 'validation', `invalid Kommo page cursor ${JSON.stringify(cursor)}`);
  return n;
}


export class KommoAdapter implements CrmAdapter {
  readonly provider = 'kommo' as const;
  private readonly http: CrmHttpClient;

  constructor(options: CrmAdapterOptions) {
    // Kommo's documented limit is 7 rps; a 429 without retry_after waits one second.
    this.http = adapterHttpClient('kommo', options, 1_000);
  }

  supportsDeletionFeed(objectType: CrmObjectType): boolean {
    return deletionEvents[objectType] !== undefined;
  }

  private async list(objectType: CrmObjectType, query: Record<string, string | number | undefined>, page: PageRequest): Promise<CrmPage> {
    const { path, key } = paths[objectType];
    const n = pageNumber(page.cursor);
    const res = await this.http.request({
      method: 'GET',
      path,
      query: objectType === 'pipelines' ? {} : { ...query, page: n, limit: Math.min(page.pageSize ?? KOMMO_MAX_PAGE, KOMMO_MAX_PAGE) },
    });
    if (res.status === 204 || res.body === null) return { records: [], nextCursor: null };
    const body = this.http.parse(res.body, listEnvelope(key), `GET ${path}`);
    const items = body._embedded[key] as KommoEntity[];
    const hasNext = objectType !== 'pipelines' && body._links?.next !== undefined && items.length > 0;
    return { records: items.map((e) => kommoRecord(objectType, e)), nextCursor: hasNext ? String(n + 1) : null };
  }

  listPage(objectType: CrmObjectType, page: PageRequest): Promise<CrmPage> {
    return this.list(objectType, objectType === 'pipelines' ? {} : { 'order[id]': 'asc' }, page);
  }

  listChangedSince(objectType: CrmObjectType, since: Date, page: PageRequest): Promise<CrmPage> {
    if (!paths[objectType].pagedUpdatedFilter) return this.listPage(objectType, page);
    return this.list(
      objectType,
      { 'filter[updated_at][from]': Math.floor(since.getTime() / 1000), 'order[updated_at]': 'asc' },
      page,
    );
  }

  async listDeletedSince(objectType: CrmObjectType, since: Date, page: PageRequest): Promise<CrmDeletionsPage> {
    const type = deletionEvents[objectType];
    if (!type) return { externalIds: [], nextCursor: null };
    const n = pageNumber(page.cursor);
    const res = await this.http.request({
      method: 'GET',
      path: '/api/v4/events',
      query: {
        'filter[type]': type,
        'filter[created_at][from]': Math.floor(since.getTime() / 1000),
        page: n,
        limit: 100,
      },
    });
    if (res.status === 204 || res.body === null) return { externalIds: [], nextCursor: null };
    const body = this.http.parse(res.body, eventsEnvelope, 'GET /api/v4/events');
    const events = body._embedded.events;
    return {
      externalIds: events.map((e) => String(e.entity_id)),
      nextCursor: body._links?.next && events.length > 0 ? String(n + 1) : null,
    };
  }

  async getRecord(objectType: CrmEntityType, externalId: string): Promise<CrmRecord | null> {
    try {
      const res = await this.http.request({ method: 'GET', path: `/api/v4/${entityPaths[objectType]}/${encodeURIComponent(externalId)}` });
      if (res.status === 204 || res.body === null) return null;
      return kommoRecord(objectType, this.http.parse(res.body, entity, `GET ${objectType}/${externalId}`));
    } catch (err) {
      if (err instanceof CrmError && err.kind === 'not-found') return null;
      throw err;
    }
  }

  async addNote(target: CrmTarget, text: string): Promise<{ externalId: string }> {
    const body = await this.http.requestParsed(
      {
        method: 'POST',
        path: `/api/v4/${entityPaths[target.objectType]}/notes`,
        json: [{ entity_id: Number(target.externalId), note_type: 'common', params: { text } }],
      },
      createdEnvelope('notes'),
    );
    return { externalId: String(body._embedded.notes![0]!.id) };
  }

  async createTask(target: CrmTarget, task: { text: string; dueAt: Date; ownerId?: string | null }): Promise<{ externalId: string }> {
    const body = await this.http.requestParsed(
      {
        method: 'POST',
        path: '/api/v4/tasks',
        json: [
          {
            text: task.text,
            complete_till: Math.floor(task.dueAt.getTime() / 1000),
            entity_id: Number(target.externalId),
            entity_type: entityPaths[target.objectType],
            task_type_id: 1,
            ...(task.ownerId && /^\d+$/.test(task.ownerId) ? { responsible_user_id: Number(task.ownerId) } : {}),
          },
        ],
      },
      createdEnvelope('tasks'),
    );
    return { externalId: String(body._embedded.tasks![0]!.id) };
  }

  async findRecentWrite(kind: 'note' | 'task', target: CrmTarget, text: string, since: Date): Promise<{ externalId: string } | null> {
    const fromSec = Math.floor(since.getTime() / 1000);
    const entityPath = entityPaths[target.objectType];
    for (let page = 1; page <= FIND_WRITE_MAX_PAGES; page++) {
      // GET /api/v4/{entity}/{id}/notes lists one record's notes (reference A3, K10); tasks filter by entity.
      const res =
        kind === 'note'
          ? await this.http.request({
              method: 'GET',
              path: `/api/v4/${entityPath}/${encodeURIComponent(target.externalId)}/notes`,
              query: { 'filter[note_type]': 'common', 'filter[updated_at][from]': fromSec, page, limit: 250 },
            })
          : await this.http.request({
              method: 'GET',
              path: '/api/v4/tasks',
              query: { 'filter[entity_type]': entityPath, 'filter[entity_id][]': target.externalId, 'filter[updated_at][from]': fromSec, page, limit: 250 },
            });
      if (res.status === 204 || res.body === null) return null;
      const found =
        kind === 'note'
          ? this.http.parse(res.body, notesEnvelope, 'GET notes')._embedded.notes.find((n) => n.created_at >= fromSec && n.params?.text === text)
          : this.http.parse(res.body, tasksEnvelope, 'GET tasks')._embedded.tasks.find((t) => t.created_at >= fromSec && t.text === text);
      if (found) return { externalId: String(found.id) };
      if (!(res.body as { _links?: { next?: unknown } })._links?.next) return null;
    }
    return null;
  }

  async updateStage(dealId: string, stage: { stageId: string; pipelineId?: string }): Promise<CrmRecord> {
    await this.http.request({
      method: 'PATCH',
      path: `/api/v4/leads/${encodeURIComponent(dealId)}`,
      json: { status_id: Number(stage.stageId), ...(stage.pipelineId ? { pipeline_id: Number(stage.pipelineId) } : {}) },
    });
    const record = await this.getRecord('deals', dealId);
    if (!record) throw new CrmError('kommo', 'not-found', `lead ${dealId} vanished after its stage changed`);
    return record;
  }

  messenger(settings: MessagingSettings): CrmMessenger {
    return new KommoTalkMessenger(this.http, settings);
  }

  async whoAmI(): Promise<{ accountId: string }> {
    const body = await this.http.requestParsed({ method: 'GET', path: '/api/v4/account' }, z.looseObject({ id: z.number().int() }));
    return { accountId: String(body.id) };
  }
}

/** OAuth token endpoint of one Kommo account (`https://{referer}/oauth2/access_token`). */
export async function kommoTokenRequest(
  opts: { baseUrl: string; app: OAuthApp; timeoutMs?: number; fetch?: typeof fetch },
  grant: TokenGrant,
): Promise<TokenSet> {
  const http = new CrmHttpClient({ provider: 'kommo', baseUrl: opts.baseUrl, timeoutMs: opts.timeoutMs ?? 15_000, ...(opts.fetch ? { fetch: opts.fetch } : {}) });
  // The token endpoint answers 400/401 for a used or revoked refresh token.
  const body = await http
    .requestParsed({ method: 'POST', path: '/oauth2/access_token', anonymous: true, json: oauthGrantFields(opts.app, grant) }, tokenResponse)
    .catch(grantRejected('kommo', 'Kommo', grant));
  return { accessToken: body.access_token, refreshToken: body.refresh_token, expiresAt: new Date(Date.now() + body.expires_in * 1000) };
}

export function kommoAuthorizeUrl(opts: { authorizeUrl: string; clientId: string; state: string }): string {
  const url = new URL(opts.authorizeUrl);
  url.searchParams.set('client_id', opts.clientId);
  url.searchParams.set('state', opts.state);
  url.searchParams.set('mode', 'post_message');
  return url.toString();
}
