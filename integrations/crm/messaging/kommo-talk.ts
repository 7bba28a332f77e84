/**
 * Kommo: a lead's chat (WhatsApp, Instagram, Telegram, the site chat…) belongs to another
 * integration, so the amojo Chats API, which only serves channels we own, cannot reach it.
 * Two official routes do (docs/crm.md "Replies"):
 * - the Chats API add-on: `POST /api/v4/talks/{talkId}/send_message` `{text}` answers 202 and
 *   goes out on the talk's channel. It spends the account's monthly send quota (500 on Pro and
 *   Enterprise), counted by the caller; 402 means the quota is gone, 403 that the scope or plan
 *   lacks it.
 * - beyond the quota or where the add-on is unavailable: the reply is written into a lead
 *   custom field and a Salesbot whose step sends `{{lead.cf.<field>}}` is launched for the lead
 *   (`POST /api/v4/bots/{botId}/run` `{entity_id, entity_type: "leads"}`, 202).
 * Both write into the talk; `GET /api/v4/talks/{talkId}/messages` reads them back.
 */
import { z } from 'zod';
import { CrmError, type CrmHttpClient } from '../http.js';
import type { CrmMessenger, MessagingSettings, ReplyRoute, ReplyTarget, SentReply } from './types.js';

/** Message length per channel (the messengers' own limits); unknown channels get the smallest. */
const originLimits: Record<string, number> = {
  telegram: 4_096,
  waba: 4_096,
  whatsapp: 4_096,
  instagram: 1_000,
  instagram_business: 1_000,
  facebook: 2_000,
  viber: 7_000,
  onlinechat: 4_000,
};
const DEFAULT_LIMIT = 1_000;

const queued = z.looseObject({ id: z.union([z.string(), z.number()]) });
const talkMessages = z.looseObject({
  _embedded: z.looseObject({
    messages: z.array(
      z.looseObject({
        id: z.union([z.string(), z.number()]),
        type: z.string(),
        text: z.string().nullish(),
        created_at: z.number(),
        author: z.looseObject({ type: z.string() }).nullish(),
      }),
    ),
  }),
});

export class KommoTalkMessenger implements CrmMessenger {
  constructor(
    private readonly http: CrmHttpClient,
    private readonly settings: MessagingSettings,
  ) {}

  maxChars(target: ReplyTarget): number {
    return target.provider === 'kommo' && target.origin ? (originLimits[target.origin] ?? DEFAULT_LIMIT) : DEFAULT_LIMIT;
  }

  async send(target: ReplyTarget, text: string, route: ReplyRoute): Promise<SentReply> {
    if (target.provider !== 'kommo') throw new CrmError('kommo', 'validation', 'not a Kommo talk');
    if (route === 'kommo_talk') {
      const res = await this.http.request({ method: 'POST', path: `/api/v4/talks/${target.talkId}/send_message`, json: { text } });
      return { externalId: String(this.http.parse(res.body, queued, 'POST send_message').id), route };
    }
    const bot = this.settings.kommoSalesbot;
    if (!bot) throw new CrmError('kommo', 'validation', 'the send_message quota is used up and no Salesbot is set for replies (messaging settings: kommoSalesbot)');
    await this.http.request({
      method: 'PATCH',
      path: `/api/v4/leads/${target.leadId}`,
      json: { custom_fields_values: [{ field_id: Number(bot.replyFieldId), values: [{ value: text }] }] },
    });
    await this.http.request({ method: 'POST', path: `/api/v4/bots/${bot.botId}/run`, json: { entity_id: Number(target.leadId), entity_type: 'leads' } });
    return { externalId: `salesbot:${bot.botId}:${target.leadId}`, route };
  }

  async findSent(target: ReplyTarget, text: string, since: Date, route: ReplyRoute): Promise<SentReply | null> {
    if (target.provider !== 'kommo') return null;
    const res = await this.http.request({ method: 'GET', path: `/api/v4/talks/${target.talkId}/messages`, query: { limit: 100 } });
    if (res.status === 204 || res.body === null) return null;
    const body = this.http.parse(res.body, talkMessages, 'GET talk messages');
    const fromSec = Math.floor(since.getTime() / 1000);
    // send_message writes as the token's user (author `internal`), the Salesbot as `bot`; the
    // window and the exact text tell our message from a salesperson's.
    const author = route === 'kommo_talk' ? 'internal' : 'bot';
    const found = body._embedded.messages.find((m) => m.type === 'outgoing' && m.text === text && m.created_at >= fromSec && m.author?.type === author);
    return found ? { externalId: String(found.id), route } : null;
  }
}
