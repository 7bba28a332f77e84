/**
 * Sending a reply into a lead's CRM thread: where it goes (the thread as the CRM names it) and
 * what came back. Nothing here knows about Temporal or Postgres; the send-reply activity owns
 * the idempotency ledger and the Kommo quota count.
 */
import { z } from 'zod';

/** The lead's thread, as the incoming message named it: what a reply needs to reach the same chat. */
export const replyTargetSchema = z.discriminatedUnion('provider', [
  z.object({
    provider: z.literal('kommo'),
    /** The talk (conversation) the lead wrote in; `send_message` replies on its channel. */
    talkId: z.string().regex(/^\d{1,20}$/),
    /** The lead the talk belongs to: a Salesbot is launched for it when `send_message` cannot be used. */
    leadId: z.string().regex(/^\d{1,20}$/),
    /** The channel (`telegram`, `instagram_business`, `waba`…), which decides the length limit. */
    origin: z.string().max(100).nullable(),
  }),
  z.object({
    provider: z.literal('hubspot'),
    threadId: z.string().regex(/^\d{1,30}$/),
    /** Copied from the lead's latest message, as HubSpot asks for replies on an existing thread. */
    channelId: z.string().max(50),
    channelAccountId: z.string().max(50),
    /** The lead as the incoming message's sender (`V-<contactId>`), with how the channel reaches them. */
    recipient: z.object({
      actorId: z.string().max(200),
      deliveryIdentifier: z.object({ type: z.string().max(100), value: z.string().max(500) }).nullable(),
    }),
  }),
]);
export type ReplyTarget = z.infer<typeof replyTargetSchema>;

/** How one part of a reply reached the thread. */
export type ReplyRoute = 'hubspot_thread' | 'kommo_talk' | 'kommo_salesbot';

export interface SentReply {
  /** The CRM's id of the message (HubSpot message id, Kommo's queued message id, or the Salesbot task). */
  externalId: string;
  route: ReplyRoute;
}

/** Per-connection messaging configuration (public.crm_messaging_settings). */
export interface MessagingSettings {
  /** HubSpot: the dedicated user the agent writes as, `A-<userId>` (HubSpot has no bot sender). */
  hubspotSenderActorId: string | null;
  /** Kommo: the Salesbot that sends `{{lead.cf.<replyFieldId>}}`, for replies beyond the send_message quota. */
  kommoSalesbot: { botId: string; replyFieldId: string } | null;
}

export interface CrmMessenger {
  /** Longest text one message on this target's channel may carry. */
  maxChars(target: ReplyTarget): number;
  /** Sends one message; a CrmError on failure (429/5xx retryable, 4xx not). */
  send(target: ReplyTarget, text: string, route: ReplyRoute): Promise<SentReply>;
  /**
   * A message with exactly `text` that we sent into the thread at or after `since`, or null.
   * Neither provider takes an idempotency key, so a send retried after a crash (the CRM
   * accepted, our ledger did not commit) first looks for its own earlier message with this.
   */
  findSent(target: ReplyTarget, text: string, since: Date, route: ReplyRoute): Promise<SentReply | null>;
}
