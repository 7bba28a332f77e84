/**
 * HubSpot CRM API v3 adapter. Wire details and their sources: shared reference crm-apis.md
 * part B. Quirks handled here: every property value is a string; contacts filter on
 * `lastmodifieddate`, other objects on `hs_lastmodifieddate`; search caps at 10,000 results per
 * query (we restart the query from the last modified time seen); REST 429s carry no
 * Retry-After (limits roll over 10 s); deletions are archived records listed with
 * `archived=true`.
 */
import { HubspotThreadMessenger } from './messaging/hubspot-thread.js';
import { replyTargetSchema, type CrmMessenger, type MessagingSettings, type ReplyTarget } from './messaging/types.js';
import { z } from 'zod';
import { adapterHttpClient, CrmError, CrmHttpClient, grantRejected, oauthGrantFields, type CrmAdapterOptions } from './http.js';
import { incomingMessageText } from './webhooks.js';
import type {
  CrmAdapter,
  CrmDeletionsPage,
  CrmEntityType,
  CrmConversationMessage,
  CrmIncomingMessage,
  CrmMessageRef,
  CrmObjectType,
  CrmPage,
  CrmRecord,
  CrmTarget,
  OAuthApp,
  PageRequest,
  TokenGrant,
  TokenSet,
} from './types.js';

export const HUBSPOT_MAX_LIST_PAGE = 100;
export const HUBSPOT_MAX_SEARCH_PAGE = 200;
export const HUBSPOT_SEARCH_RESULT_CAP = 10_000;

const properties: Record<CrmEntityType, string[]> = {
  contacts: ['firstname', 'lastname', 'email', 'phone', 'hubspot_owner_id', 'lastmodifieddate', 'createdate'],
  companies: ['name', 'domain', 'hubspot_owner_id', 'hs_lastmodifieddate', 'createdate'],
  deals: ['dealname', 'dealstage', 'pipeline', 'amount', 'closedate', 'hubspot_owner_id', 'hs_lastmodifieddate', 'createdate'],
};
const modifiedProperty: Record<CrmEntityType, string> = {
  contacts: 'lastmodifieddate',
  companies: 'hs_lastmodifieddate',
  deals: 'hs_lastmodifieddate',
};
// Association type ids (HUBSPOT_DEFINED), reference B3.
const noteAssociation: Record<CrmEntityType, number> = { contacts: 202, companies: 190, deals: 214 };
const taskAssociation: Record<CrmEntityType, number> = { contacts: 204, companies: 192, deals: 216 };

const object = z.looseObject({
  id: z.string(),
  properties: z.record(z.string(), z.string().nullable()),
  createdAt: z.string().optional(),
  updatedAt: z.string().optional(),
  archived: z.boolean().optional(),
  archivedAt: z.string().optional(),
});
type HubspotObject = z.infer<typeof object>;

const paging = z.looseObject({ next: z.looseObject({ after: z.string() }).optional() }).optional();
const listResponse = z.looseObject({ results: z.array(object), paging });
const searchResponse = z.looseObject({ total: z.number().int(), results: z.array(object), paging });
const pipelinesResponse = z.looseObject({
  results: z.array(
    z.looseObject({
      id: z.string(),
      label: z.string(),
      displayOrder: z.number().optional(),
      archived: z.boolean().optional(),
      stages: z.array(z.looseObject({ id: z.string(), label: z.string(), metadata: z.record(z.string(), z.unknown()).optional() })),
    }),
  ),
});
const ownersResponse = z.looseObject({
  results: z.array(
    z.looseObject({
      id: z.string(),
      email: z.string().nullish(),
      firstName: z.string().nullish(),
      lastName: z.string().nullish(),
      updatedAt: z.string().optional(),
    }),
  ),
  paging,
});
// Conversations API v3 (inbox & messages): only the fields we act on are checked. `direction`
// is absent on types other than MESSAGE (e.g. THREAD_STATUS_CHANGE); contact ids are strings.
const conversationMessage = z.looseObject({
  id: z.string(),
  type: z.string(),
  text: z.string().nullish(),
  direction: z.string().nullish(),
  // What a reply on the same thread must repeat (the guide: copy them from the latest message).
  channelId: z.union([z.string(), z.number()]).nullish(),
  channelAccountId: z.union([z.string(), z.number()]).nullish(),
  senders: z
    .array(z.looseObject({ actorId: z.string().nullish(), deliveryIdentifier: z.looseObject({ type: z.string(), value: z.string() }).nullish() }))
    .nullish(),
});
const conversationThread = z.looseObject({
  id: z.string(),
  associatedContactId: z.union([z.string(), z.number()]).nullish(),
  spam: z.boolean().nullish(),
});
const tokenResponse = z.looseObject({
  access_token: z.string().min(1),
  refresh_token: z.string().min(1),
  expires_in: z.number().int().positive(),
  hub_id: z.number().int().optional(),
});

function isEntity(t: CrmObjectType): t is CrmEntityType {
  return t === 'contacts' || t === 'companies' || t === 'deals';
}

function date(value: string | null | undefined): Date | null {
  if (!value) return null;
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  return Number.isNaN(ms) ? null : new Date(ms);
}

export function hubspotRecord(objectType: CrmEntityType, o: HubspotObject): CrmRecord {
  const p = o.properties;
  const name =
    objectType === 'contacts'
      ? [p.firstname, p.lastname].filter(Boolean).join(' ') || null
      : objectType === 'companies'
        ? (p.name ?? null)
        : (p.dealname ?? null);
  return {
    objectType,
    externalId: o.id,
    name,
    email: p.email ?? null,
    pipelineId: objectType === 'deals' ? (p.pipeline ?? null) : null,
    stageId: objectType === 'deals' ? (p.dealstage ?? null) : null,
    ownerId: p.hubspot_owner_id ?? null,
    updatedAt: date(p[modifiedProperty[objectType]]) ?? date(o.updatedAt),
    properties: { ...p, ...(o.createdAt ? { createdAt: o.createdAt } : {}), ...(o.updatedAt ? { updatedAt: o.updatedAt } : {}) },
  };
}

/** The search cursor: HubSpot's integer `after` within one query, plus the query's lower bound. */
const searchCursor = z.object({ after: z.number().int().min(0), since: z.number().int().min(0) });


export class HubspotAdapter implements CrmAdapter {
  readonly provider = 'hubspot' as const;
  private readonly http: CrmHttpClient;

  constructor(options: CrmAdapterOptions) {
    // HubSpot's REST 429s name no wait; its per-app window is a rolling 10 s.
    this.http = adapterHttpClient('hubspot', options, 2_000);
  }

  supportsDeletionFeed(objectType: CrmObjectType): boolean {
    return isEntity(objectType);
  }

  async listPage(objectType: CrmObjectType, page: PageRequest): Promise<CrmPage> {
    if (objectType === 'pipelines') {
      const body = await this.http.requestParsed({ method: 'GET', path: '/crm/v3/pipelines/deals' }, pipelinesResponse);
      return {
        records: body.results.map(({ id, label, ...rest }) => ({
          objectType,
          externalId: id,
          name: label,
          email: null,
          pipelineId: id,
          stageId: null,
          ownerId: null,
          updatedAt: null,
          properties: { label, ...rest },
        })),
        nextCursor: null,
      };
    }
    const limit = Math.min(page.pageSize ?? HUBSPOT_MAX_LIST_PAGE, HUBSPOT_MAX_LIST_PAGE);
    if (objectType === 'users') {
      const body = await this.http.requestParsed(
        { method: 'GET', path: '/crm/v3/owners', query: { limit, after: page.cursor ?? undefined } },
        ownersResponse,
      );
      return {
        records: body.results.map((o) => ({
          objectType,
          externalId: o.id,
          name: [o.firstName, o.lastName].filter(Boolean).join(' ') || null,
          email: o.email ?? null,
          pipelineId: null,
          stageId: null,
          ownerId: null,
          updatedAt: date(o.updatedAt),
          properties: { ...o },
        })),
        nextCursor: body.paging?.next?.after ?? null,
      };
    }
    const body = await this.http.requestParsed(
      {
        method: 'GET',
        path: `/crm/v3/objects/${objectType}`,
        query: { limit, after: page.cursor ?? undefined, properties: properties[objectType].join(',') },
      },
      listResponse,
    );
    return { records: body.results.map((o) => hubspotRecord(objectType, o)), nextCursor: body.paging?.next?.after ?? null };
  }

  async listChangedSince(objectType: CrmObjectType, since: Date, page: PageRequest): Promise<CrmPage> {
    if (!isEntity(objectType)) return this.listPage(objectType, page);
    const limit = Math.min(page.pageSize ?? HUBSPOT_MAX_SEARCH_PAGE, HUBSPOT_MAX_SEARCH_PAGE);
    const cursor = page.cursor ? this.http.parse(JSON.parse(page.cursor) as unknown, searchCursor, 'search cursor') : { after: 0, since: since.getTime() };
    const prop = modifiedProperty[objectType];
    const body = await this.http.requestParsed(
      {
        method: 'POST',
        path: `/crm/v3/objects/${objectType}/search`,
        json: {
          filterGroups: [{ filters: [{ propertyName: prop, operator: 'GTE', value: String(cursor.since) }] }],
          sorts: [{ propertyName: prop, direction: 'ASCENDING' }],
          properties: properties[objectType],
          limit,
          after: String(cursor.after),
        },
      },
      searchResponse,
    );
    const records = body.results.map((o) => hubspotRecord(objectType, o));
    const nextAfter = body.paging?.next?.after;
    let nextCursor: string | null = null;
    if (nextAfter !== undefined) {
      const after = Number(nextAfter);
      if (after + limit <= HUBSPOT_SEARCH_RESULT_CAP) {
        nextCursor = JSON.stringify({ after, since: cursor.since });
      } else {
        // Paging past 10,000 answers 400: start a new query at the last modified time seen.
        // GTE repeats the records sharing that timestamp; upserts by id absorb them.
        const last = records.at(-1)?.updatedAt?.getTime() ?? cursor.since;
        if (last <= cursor.since) {
          throw new CrmError('hubspot', 'validation', `more than ${HUBSPOT_SEARCH_RESULT_CAP} ${objectType} share one modification time; run a full sync`);
        }
        nextCursor = JSON.stringify({ after: 0, since: last });
      }
    }
    return { records, nextCursor };
  }

  async listDeletedSince(objectType: CrmObjectType, since: Date, page: PageRequest): Promise<CrmDeletionsPage> {
    if (!isEntity(objectType)) return { externalIds: [], nextCursor: null };
    const body = await this.http.requestParsed(
      {
        method: 'GET',
        path: `/crm/v3/objects/${objectType}`,
        query: { archived: 'true', limit: HUBSPOT_MAX_LIST_PAGE, after: page.cursor ?? undefined },
      },
      listResponse,
    );
    return {
      externalIds: body.results.filter((o) => (date(o.archivedAt)?.getTime() ?? Infinity) >= since.getTime()).map((o) => o.id),
      nextCursor: body.paging?.next?.after ?? null,
    };
  }

  async getRecord(objectType: CrmEntityType, externalId: string): Promise<CrmRecord | null> {
    try {
      const body = await this.http.requestParsed(
        { method: 'GET', path: `/crm/v3/objects/${objectType}/${encodeURIComponent(externalId)}`, query: { properties: properties[objectType].join(',') } },
        object,
      );
      return hubspotRecord(objectType, body);
    } catch (err) {
      if (err instanceof CrmError && err.kind === 'not-found') return null;
      throw err;
    }
  }

  private async createEngagement(kind: 'notes' | 'tasks', target: CrmTarget, props: Record<string, string>, typeId: number) {
    const body = await this.http.requestParsed(
      {
        method: 'POST',
        path: `/crm/v3/objects/${kind}`,
        json: {
          properties: props,
          associations: [{ to: { id: target.externalId }, types: [{ associationCategory: 'HUBSPOT_DEFINED', associationTypeId: typeId }] }],
        },
      },
      object,
    );
    return { externalId: body.id };
  }

  addNote(target: CrmTarget, text: string): Promise<{ externalId: string }> {
    return this.createEngagement('notes', target, { hs_timestamp: new Date().toISOString(), hs_note_body: text }, noteAssociation[target.objectType]);
  }

  createTask(target: CrmTarget, task: { text: string; dueAt: Date; ownerId?: string | null }): Promise<{ externalId: string }> {
    return this.createEngagement(
      'tasks',
      target,
      {
        hs_timestamp: task.dueAt.toISOString(),
        hs_task_subject: task.text.slice(0, 200),
        hs_task_body: task.text,
        hs_task_status: 'NOT_STARTED',
        hs_task_type: 'TODO',
        ...(task.ownerId ? { hubspot_owner_id: task.ownerId } : {}),
      },
      taskAssociation[target.objectType],
    );
  }

  async findRecentWrite(kind: 'note' | 'task', target: CrmTarget, text: string, since: Date): Promise<{ externalId: string } | null> {
    const objectPath = kind === 'note' ? 'notes' : 'tasks';
    const bodyProperty = kind === 'note' ? 'hs_note_body' : 'hs_task_body';
    // Search filters on associations with the `associations.<singular type>` pseudo-property.
    const associated = { contacts: 'contact', companies: 'company', deals: 'deal' }[target.objectType];
    const body = await this.http.requestParsed(
      {
        method: 'POST',
        path: `/crm/v3/objects/${objectPath}/search`,
        json: {
          filterGroups: [
            {
              filters: [
                { propertyName: `associations.${associated}`, operator: 'EQ', value: target.externalId },
                { propertyName: 'hs_createdate', operator: 'GTE', value: String(since.getTime()) },
              ],
            },
          ],
          properties: [bodyProperty],
          limit: 100,
        },
      },
      searchResponse,
    );
    const found = body.results.find((r) => r.properties[bodyProperty] === text);
    return found ? { externalId: found.id } : null;
  }

  async updateStage(dealId: string, stage: { stageId: string; pipelineId?: string }): Promise<CrmRecord> {
    const body = await this.http.requestParsed(
      {
        method: 'PATCH',
        path: `/crm/v3/objects/deals/${encodeURIComponent(dealId)}`,
        json: { properties: { dealstage: stage.stageId, ...(stage.pipelineId ? { pipeline: stage.pipelineId } : {}) } },
      },
      object,
    );
    return hubspotRecord('deals', body);
  }

  async getIncomingMessage(ref: CrmMessageRef): Promise<CrmIncomingMessage | null> {
    const message = await this.getConversationMessage(ref);
    return message?.direction === 'incoming' ? { contactId: message.contactId, text: message.text, replyTarget: message.replyTarget } : null;
  }

  async getConversationMessage(ref: CrmMessageRef): Promise<CrmConversationMessage | null> {
    const thread = `/conversations/v3/conversations/threads/${encodeURIComponent(ref.threadId)}`;
    try {
      const message = await this.http.requestParsed({ method: 'GET', path: `${thread}/messages/${encodeURIComponent(ref.messageId)}` }, conversationMessage);
      if (message.type !== 'MESSAGE') return null;
      // OUTGOING is anything sent from the inbox: a colleague's reply or the agent's own reply
      // posted back to HubSpot. Only one sent by a person of the portal (an agent actor `A-…`;
      // not `S-hubspot`, `I-<app>`, bots) is passed on, for the intake to tell ours apart.
      const sender = message.senders?.[0]?.actorId ?? null;
      const outgoing = message.direction === 'OUTGOING' && sender !== null && sender.startsWith('A-');
      const text = message.direction === 'INCOMING' ? incomingMessageText(message.text) : null;
      if (!outgoing && text === null) return null;
      // The conversation is keyed by the contact, which only the thread names.
      const { associatedContactId, spam } = await this.http.requestParsed({ method: 'GET', path: thread }, conversationThread);
      // A thread the inbox marked as spam is not a conversation an agent should join.
      if (spam === true) return null;
      if (associatedContactId === null || associatedContactId === undefined || associatedContactId === '') return null;
      const contactId = String(associatedContactId);
      if (outgoing) return { direction: 'outgoing', contactId, messageId: message.id, senderActorId: sender };
      return { direction: 'incoming', contactId, text: text!, replyTarget: replyTargetOf(ref.threadId, message) };
    } catch (err) {
      if (err instanceof CrmError && err.kind === 'not-found') return null;
      throw err;
    }
  }

  messenger(settings: MessagingSettings): CrmMessenger {
    return new HubspotThreadMessenger(this.http, settings);
  }

  async whoAmI(): Promise<{ accountId: string }> {
    const body = await this.http.requestParsed({ method: 'GET', path: '/account-info/v3/details' }, z.looseObject({ portalId: z.number().int() }));
    return { accountId: String(body.portalId) };
  }
}

/**
 * Where a reply to this incoming message goes: its thread, its channel and channel account, and
 * its sender (the contact's visitor actor) as the recipient. Null when the message does not name
 * its channel (a reply could not be addressed; the conversation still runs, unanswered in HubSpot).
 */
function replyTargetOf(threadId: string, message: z.infer<typeof conversationMessage>): ReplyTarget | null {
  const sender = message.senders?.[0];
  const target = replyTargetSchema.safeParse({
    provider: 'hubspot',
    threadId,
    channelId: message.channelId === null || message.channelId === undefined ? undefined : String(message.channelId),
    channelAccountId: message.channelAccountId === null || message.channelAccountId === undefined ? undefined : String(message.channelAccountId),
    recipient: { actorId: sender?.actorId ?? undefined, deliveryIdentifier: sender?.deliveryIdentifier ? { type: sender.deliveryIdentifier.type, value: sender.deliveryIdentifier.value } : null },
  });
  return target.success ? target.data : null;
}

/** HubSpot's OAuth token endpoint (form-encoded, snake_case answers). */
export async function hubspotTokenRequest(
  opts: { baseUrl: string; app: OAuthApp; timeoutMs?: number; fetch?: typeof fetch },
  grant: TokenGrant,
): Promise<TokenSet> {
  const http = new CrmHttpClient({ provider: 'hubspot', baseUrl: opts.baseUrl, timeoutMs: opts.timeoutMs ?? 15_000, ...(opts.fetch ? { fetch: opts.fetch } : {}) });
  // invalid_grant / BAD_REFRESH_TOKEN (400) means the grant is gone.
  const body = await http
    .requestParsed({ method: 'POST', path: '/oauth/v1/token', anonymous: true, form: oauthGrantFields(opts.app, grant) }, tokenResponse)
    .catch(grantRejected('hubspot', 'HubSpot', grant));
  return {
    accessToken: body.access_token,
    refreshToken: body.refresh_token,
    expiresAt: new Date(Date.now() + body.expires_in * 1000),
    ...(body.hub_id !== undefined ? { accountId: String(body.hub_id) } : {}),
  };
}

export function hubspotAuthorizeUrl(opts: { authorizeUrl: string; clientId: string; redirectUri: string; state: string; scopes: string[] }): string {
  const url = new URL(opts.authorizeUrl);
  url.searchParams.set('client_id', opts.clientId);
  url.searchParams.set('redirect_uri', opts.redirectUri);
  url.searchParams.set('scope', opts.scopes.join(' '));
  url.searchParams.set('state', opts.state);
  return url.toString();
}

// `conversations.read`: incoming chat messages are read from the conversations API, and HubSpot
// requires the scope of apps that subscribe to conversation webhooks.
export const HUBSPOT_SCOPES = [
  'crm.objects.contacts.read',
  'crm.objects.contacts.write',
  'crm.objects.companies.read',
  'crm.objects.deals.read',
  'crm.objects.deals.write',
  'crm.objects.owners.read',
  'conversations.read',
];
