/**
 * HubSpot: the reply is posted into the lead's conversation thread through the Conversations
 * API (`POST /conversations/v3/conversations/threads/{threadId}/messages`, scope
 * `conversations.write`), and HubSpot delivers it on the thread's channel. HubSpot has no bot
 * sender for this API: `senderActorId` must be an agent actor (`A-<userId>`) of the user
 * sending, so each connection names a dedicated user for the agent. `channelId` and
 * `channelAccountId` are copied from the thread's latest incoming message, as HubSpot's guide
 * says to do on an existing thread. See docs/crm.md "Replies".
 */
import { z } from 'zod';
import { CrmError, type CrmHttpClient } from '../http.js';
import type { CrmMessenger, MessagingSettings, ReplyTarget, SentReply } from './types.js';

/** Generic channel ids (HubSpot guide): 1000 live chat, 1001 Facebook Messenger, 1002 email. */
const channelLimits: Record<string, number> = { '1000': 5_000, '1001': 2_000, '1002': 50_000 };
/** Channels we know nothing about (WhatsApp and custom channels): a length every messenger takes. */
const DEFAULT_LIMIT = 1_000;

const postedMessage = z.looseObject({ id: z.string() });
const threadMessages = z.looseObject({
  results: z.array(
    z.looseObject({
      id: z.string(),
      type: z.string(),
      text: z.string().nullish(),
      direction: z.string().nullish(),
      createdAt: z.string(),
      senders: z.array(z.looseObject({ actorId: z.string().nullish() })).nullish(),
    }),
  ),
  paging: z.looseObject({ next: z.looseObject({ after: z.string() }).nullish() }).nullish(),
});

const threadPath = (threadId: string) => `/conversations/v3/conversations/threads/${encodeURIComponent(threadId)}/messages`;

export class HubspotThreadMessenger implements CrmMessenger {
  constructor(
    private readonly http: CrmHttpClient,
    private readonly settings: MessagingSettings,
  ) {}

  maxChars(target: ReplyTarget): number {
    return target.provider === 'hubspot' ? (channelLimits[target.channelId] ?? DEFAULT_LIMIT) : DEFAULT_LIMIT;
  }

  private sender(): string {
    const actor = this.settings.hubspotSenderActorId;
    // A configuration problem, not a CRM outage: retrying cannot help until someone sets it.
    if (!actor) throw new CrmError('hubspot', 'validation', 'no HubSpot user is set for the agent to write as (messaging settings: hubspotSenderActorId)');
    return actor;
  }

  async send(target: ReplyTarget, text: string): Promise<SentReply> {
    if (target.provider !== 'hubspot') throw new CrmError('hubspot', 'validation', 'not a HubSpot thread');
    const body = await this.http.requestParsed(
      {
        method: 'POST',
        path: threadPath(target.threadId),
        json: {
          type: 'MESSAGE',
          text,
          senderActorId: this.sender(),
          channelId: target.channelId,
          channelAccountId: target.channelAccountId,
          recipients: [
            { actorId: target.recipient.actorId, ...(target.recipient.deliveryIdentifier ? { deliveryIdentifiers: [target.recipient.deliveryIdentifier] } : {}) },
          ],
          // Marked required by the spec although the guide omits it.
          attachments: [],
        },
      },
      postedMessage,
    );
    return { externalId: body.id, route: 'hubspot_thread' };
  }

  async findSent(target: ReplyTarget, text: string, since: Date): Promise<SentReply | null> {
    if (target.provider !== 'hubspot') return null;
    const sender = this.sender();
    // Newest first: our earlier attempt is among the latest messages of the thread.
    let after: string | undefined;
    for (let page = 0; page < 5; page++) {
      const body = await this.http.requestParsed(
        { method: 'GET', path: threadPath(target.threadId), query: { limit: 100, sort: '-createdAt', after } },
        threadMessages,
      );
      for (const m of body.results) {
        const at = Date.parse(m.createdAt);
        if (at < since.getTime()) return null;
        if (m.type === 'MESSAGE' && m.direction === 'OUTGOING' && m.text === text && m.senders?.[0]?.actorId === sender) return { externalId: m.id, route: 'hubspot_thread' };
      }
      after = body.paging?.next?.after;
      if (!after) return null;
    }
    return null;
  }
}
