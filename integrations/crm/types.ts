/**
 * The one CRM interface the rest of the system sees. Kommo/amoCRM v4 and HubSpot CRM v3 sit
 * behind it (integrations/crm/kommo.ts, integrations/crm/hubspot.ts); nothing here knows about
 * Temporal or Postgres.
 */
import type { CrmMessenger, MessagingSettings, ReplyTarget } from './messaging/types.js';
export type CrmProvider = 'kommo' | 'hubspot';
export const crmProviders = ['kommo', 'hubspot'] as const satisfies readonly CrmProvider[];

/** Synced object types, in the order a sync walks them (stages before the deals that use them). */
export const crmObjectTypes = ['pipelines', 'users', 'companies', 'contacts', 'deals'] as const;
export type CrmObjectType = (typeof crmObjectTypes)[number];

/** Object types that can be written to and searched by agents. */
export type CrmEntityType = 'contacts' | 'companies' | 'deals';

export interface CrmRecord {
  objectType: CrmObjectType;
  externalId: string;
  name: string | null;
  email: string | null;
  pipelineId: string | null;
  stageId: string | null;
  ownerId: string | null;
  /** The provider's last-modified time, when it has one. */
  updatedAt: Date | null;
  /** Everything else the provider returned, as it returned it. */
  properties: Record<string, unknown>;
}

export interface CrmPage {
  records: CrmRecord[];
  /** Opaque to callers; null when this was the last page. */
  nextCursor: string | null;
}

export interface CrmDeletionsPage {
  externalIds: string[];
  nextCursor: string | null;
}

export interface PageRequest {
  cursor: string | null;
  /** Capped at the provider's maximum. */
  pageSize?: number;
}

export interface CrmTarget {
  objectType: CrmEntityType;
  externalId: string;
}

export interface CrmAdapter {
  readonly provider: CrmProvider;
  /** Whether `listDeletedSince` can report deletions of this type (else only a full sync finds them). */
  supportsDeletionFeed(objectType: CrmObjectType): boolean;
  /** A page of every live record, in a stable order. */
  listPage(objectType: CrmObjectType, page: PageRequest): Promise<CrmPage>;
  /** A page of records modified at or after `since`, oldest first. Types without a modified filter answer a full page. */
  listChangedSince(objectType: CrmObjectType, since: Date, page: PageRequest): Promise<CrmPage>;
  listDeletedSince(objectType: CrmObjectType, since: Date, page: PageRequest): Promise<CrmDeletionsPage>;
  /** Null when the record does not exist (or is deleted). */
  getRecord(objectType: CrmEntityType, externalId: string): Promise<CrmRecord | null>;
  addNote(target: CrmTarget, text: string): Promise<{ externalId: string }>;
  /** `ownerId`: the CRM user the task is for (Kommo `responsible_user_id`, HubSpot `hubspot_owner_id`); absent = the CRM's default. */
  createTask(target: CrmTarget, task: { text: string; dueAt: Date; ownerId?: string | null }): Promise<{ externalId: string }>;
  updateStage(dealId: string, stage: { stageId: string; pipelineId?: string }): Promise<CrmRecord>;
  /**
   * A note or task on `target` with exactly `text`, created at or after `since`, or null.
   * Neither provider takes idempotency keys on writes, so a write retried after a crash (the
   * provider acted, our ledger did not commit) looks for its own earlier result with this.
   */
  findRecentWrite(kind: 'note' | 'task', target: CrmTarget, text: string, since: Date): Promise<{ externalId: string } | null>;
  /** A cheap authenticated call; answers the account id. */
  whoAmI(): Promise<{ accountId: string }>;
  /**
   * The message `ref` names, read through the API, when the contact sent it (direction incoming,
   * a chat/email message, with text) in a thread associated with a contact; null otherwise,
   * including when the thread or message no longer exists. Optional: only providers whose
   * webhooks name a message without its text need it (HubSpot conversations; Kommo delivers
   * the text itself).
   */
  getIncomingMessage?(ref: CrmMessageRef): Promise<CrmIncomingMessage | null>;
  /**
   * Like `getIncomingMessage`, and also an outgoing message a person of the CRM account sent
   * into a contact's thread (HubSpot: `OUTGOING` from an agent actor `A-…`), which is ours or
   * a salesperson taking over. The intake reads this one.
   */
  getConversationMessage?(ref: CrmMessageRef): Promise<CrmConversationMessage | null>;
  /** Sends replies into a lead's thread through this adapter's client (same token, same rate budget). */
  messenger(settings: MessagingSettings): CrmMessenger;
}

/** A conversation message as a webhook names it (HubSpot: thread id and message id). */
export interface CrmMessageRef {
  threadId: string;
  messageId: string;
}

/** What a contact wrote, and the contact whose conversation it belongs to. */
export interface CrmIncomingMessage {
  contactId: string;
  /** Trimmed and capped (`incomingMessageText`), never empty. */
  text: string;
  /** Where a reply to it goes (the same thread and channel), when the message names it. */
  replyTarget: ReplyTarget | null;
}

/** A conversation message as the intake needs it: what the contact wrote, or who wrote to the contact. */
export type CrmConversationMessage =
  | ({ direction: 'incoming' } & CrmIncomingMessage)
  | { direction: 'outgoing'; contactId: string; messageId: string; senderActorId: string };

/** Access and refresh tokens as a provider's token endpoint issues them. */
export interface TokenSet {
  accessToken: string;
  refreshToken: string | null;
  expiresAt: Date | null;
  /** Kommo: the account host (`referer`); HubSpot: `hub_id`. */
  accountId?: string;
}

export interface OAuthApp {
  clientId: string;
  clientSecret: string;
  redirectUri: string;
}

/** One change a webhook delivery reports; `dedupeKey` identifies it across redeliveries. */
export interface CrmWebhookEvent {
  dedupeKey: string;
  objectType: CrmEntityType;
  externalId: string;
  change: 'upsert' | 'delete';
  /** e.g. `deal.propertyChange`, `leads.status`, `message.add`. */
  kind: string;
  /** An incoming chat message about the record (a lead): its text, as the CRM delivered it. */
  /** A Kommo chat message's text, with the talk it came in (where a reply goes back) when Kommo named it. */
  message?: { text: string; talk?: { talkId: string; origin: string | null } };
  /**
   * An incoming conversation message the CRM only names (HubSpot `conversation.newMessage`):
   * its text and contact are read through the API (`getIncomingMessage`). `objectType` and
   * `externalId` then describe the thread (`contacts`, thread id), as the contact is not known yet.
   */
  messageRef?: CrmMessageRef;
  /** The change moved the record (a deal/lead) into a stage: HubSpot `dealstage` change, Kommo `status`. */
  stageChange?: boolean;
  /**
   * An outgoing chat message in the lead's thread (Kommo `message[add]` with `type=outgoing`):
   * ours, or a salesperson writing, which hands the conversation to people. `messageId` tells
   * ours apart (crm_reply_sends.external_id).
   */
  outgoing?: { messageId: string | null };
}

/** What an OAuth token request presents: the code of a fresh authorization, or a refresh token. */
export type TokenGrant = { kind: 'authorization_code'; code: string } | { kind: 'refresh_token'; refreshToken: string };
