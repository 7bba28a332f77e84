/**
 * The talk (chat) side of the fake Kommo account (reference crm-messaging.md §1.2, §5.2): talks
 * on channels another integration owns, the Chats API add-on's `send_message` with its monthly
 * send quota (402 beyond it, 403 without the add-on's scope, 422 on a closed talk, 404 on an
 * unknown one), the talk's message history, and Salesbots that send a lead custom field's value
 * into the lead's open talk. No deduplication anywhere: a repeated send is a second message.
 */
import { randomUUID } from 'node:crypto';
import type { FakeContext } from './common.js';

export interface FakeTalkMessage {
  id: string;
  type: 'incoming' | 'outgoing';
  text: string;
  createdAtMs: number;
  /** external: the lead; internal: a user (a salesperson, or `send_message` as the token's user); bot: a Salesbot. */
  author: 'external' | 'internal' | 'bot';
}

export interface FakeTalk {
  id: number;
  leadId: number;
  origin: string;
  closed: boolean;
  messages: FakeTalkMessage[];
}

export interface FakeKommoTalksOptions {
  /** `send_message` calls allowed this month (Pro/Enterprise: 500). */
  monthlyQuota?: number;
  /** Whether the integration holds the add-on's "Sending to external chats" scope. */
  addOn?: boolean;
}

export interface KommoChatWebhookMessage {
  leadId: number;
  talkId: number;
  text: string;
  accountId: number;
  /** incoming: the lead wrote; outgoing: a user of the account (a salesperson) did. */
  type?: 'incoming' | 'outgoing';
  id?: string;
  createdAtMs?: number;
  origin?: string;
  authorName?: string;
}

/**
 * The body Kommo posts to an account webhook for one chat message in a lead's talk
 * (`message[add]`, form-encoded; reference crm-messaging.md §1.3). The one definition of that
 * wire format for the sandbox, the benches and the tests.
 */
export function kommoChatWebhookBody(message: KommoChatWebhookMessage): string {
  const type = message.type ?? 'incoming';
  const lead = String(message.leadId);
  return new URLSearchParams({
    'message[add][0][id]': message.id ?? randomUUID(),
    'message[add][0][chat_id]': `chat-${message.talkId}`,
    'message[add][0][talk_id]': String(message.talkId),
    'message[add][0][text]': message.text,
    'message[add][0][created_at]': String(Math.floor((message.createdAtMs ?? Date.now()) / 1000)),
    'message[add][0][element_type]': '2',
    'message[add][0][element_id]': lead,
    'message[add][0][entity_type]': 'lead',
    'message[add][0][entity_id]': lead,
    'message[add][0][type]': type,
    'message[add][0][author][id]': type === 'incoming' ? `lead-${lead}` : 'manager',
    'message[add][0][author][type]': type === 'incoming' ? 'external' : 'internal',
    'message[add][0][author][name]': message.authorName ?? (type === 'incoming' ? 'Lead' : 'Manager'),
    'message[add][0][origin]': message.origin ?? 'telegram',
    'account[id]': String(message.accountId),
  }).toString();
}

type Problem = (ctx: FakeContext, status: number, title: string, detail: string) => void;

export class FakeKommoTalks {
  readonly talks = new Map<number, FakeTalk>();
  readonly bots = new Map<number, { replyFieldId: number }>();
  /** Lead custom field values written through PATCH /api/v4/leads/{id}. */
  readonly leadFields = new Map<number, Map<number, string>>();
  monthlyQuota: number;
  addOn: boolean;
  sentThisMonth = 0;
  /** Called after a message is stored and before the answer (crash tests kill the caller here). */
  onTalkMessageStored: ((talk: FakeTalk, message: FakeTalkMessage) => void) | null = null;
  private nextTalkId = 5_000_001;
  private nextBotId = 70_001;

  constructor(options: FakeKommoTalksOptions = {}) {
    this.monthlyQuota = options.monthlyQuota ?? 500;
    this.addOn = options.addOn ?? true;
  }

  addTalk(opts: { leadId: number; origin?: string }): number {
    const id = this.nextTalkId++;
    this.talks.set(id, { id, leadId: opts.leadId, origin: opts.origin ?? 'telegram', closed: false, messages: [] });
    return id;
  }

  addBot(opts: { replyFieldId: number }): number {
    const id = this.nextBotId++;
    this.bots.set(id, opts);
    return id;
  }

  /** A message written in the talk from Kommo's side: the lead, or a salesperson in the UI. */
  addMessage(talkId: number, message: { type: 'incoming' | 'outgoing'; text: string; author?: FakeTalkMessage['author'] }): string {
    const talk = this.talks.get(talkId);
    if (!talk) throw new Error(`the fake has no talk ${talkId}`);
    return this.store(talk, { type: message.type, text: message.text, author: message.author ?? (message.type === 'incoming' ? 'external' : 'internal') }).id;
  }

  setLeadField(leadId: number, fieldId: number, value: string): void {
    const fields = this.leadFields.get(leadId) ?? new Map<number, string>();
    fields.set(fieldId, value);
    this.leadFields.set(leadId, fields);
  }

  private store(talk: FakeTalk, m: Omit<FakeTalkMessage, 'id' | 'createdAtMs'>): FakeTalkMessage {
    const message = { id: randomUUID(), createdAtMs: Date.now(), ...m };
    talk.messages.push(message);
    this.onTalkMessageStored?.(talk, message);
    return message;
  }

  /** Answers the request if it is a talk or bot route; false otherwise. */
  handle(ctx: FakeContext, method: string, segments: string[], leadExists: (id: number) => boolean, problem: Problem): boolean {
    if (segments[0] === 'talks' && segments.length >= 2) {
      const talk = this.talks.get(Number(segments[1]));
      if (method === 'POST' && segments[2] === 'send_message' && segments.length === 3) {
        if (!this.addOn) return problem(ctx, 403, 'Forbidden', 'Invalid scope'), true;
        if (!talk) return problem(ctx, 404, 'Not Found', 'Talk not found'), true;
        const text = parseJson(ctx.body).text;
        if (typeof text !== 'string' || text.trim() === '') return problem(ctx, 400, 'Bad Request', 'text is required'), true;
        if (talk.closed) return problem(ctx, 422, 'Unprocessable Entity', 'Talk is closed'), true;
        if (this.sentThisMonth >= this.monthlyQuota) return problem(ctx, 402, 'Payment Required', 'Over chat API limit'), true;
        this.sentThisMonth += 1;
        const message = this.store(talk, { type: 'outgoing', text, author: 'internal' });
        ctx.send(202, { id: message.id });
        return true;
      }
      if (method === 'GET' && segments[2] === 'messages' && segments.length === 3) {
        if (!talk) return problem(ctx, 404, 'Not Found', 'Talk not found'), true;
        const limit = Math.min(250, Math.max(1, Number(ctx.url.searchParams.get('limit') ?? 50)));
        const newest = [...talk.messages].reverse().slice(0, limit);
        if (newest.length === 0) return ctx.send(204), true;
        ctx.send(200, {
          _embedded: {
            messages: newest.map((m) => ({ id: m.id, type: m.type, text: m.text, created_at: Math.floor(m.createdAtMs / 1000), author: { type: m.author } })),
          },
        });
        return true;
      }
      if (method === 'GET' && segments.length === 2) {
        if (!talk) return problem(ctx, 404, 'Not Found', 'Talk not found'), true;
        ctx.send(200, { talk_id: talk.id, entity_id: talk.leadId, entity_type: 'lead', origin: talk.origin, is_in_work: !talk.closed });
        return true;
      }
    }
    if (segments[0] === 'bots' && segments.length === 3 && segments[2] === 'run' && method === 'POST') {
      const bot = this.bots.get(Number(segments[1]));
      if (!bot) return problem(ctx, 404, 'Not Found', 'Salesbot not found'), true;
      const body = parseJson(ctx.body);
      if (body.entity_type !== 'leads' || typeof body.entity_id !== 'number' || !leadExists(body.entity_id)) return problem(ctx, 400, 'Bad Request', 'entity_id and entity_type are required'), true;
      // The bot's one step sends {{lead.cf.<replyFieldId>}} into the lead's open talk.
      const talk = [...this.talks.values()].find((t) => t.leadId === body.entity_id && !t.closed);
      const text = this.leadFields.get(body.entity_id)?.get(bot.replyFieldId);
      if (talk && text) this.store(talk, { type: 'outgoing', text, author: 'bot' });
      ctx.send(202, {});
      return true;
    }
    return false;
  }
}

function parseJson(body: string): Record<string, unknown> {
  try {
    const parsed = JSON.parse(body) as unknown;
    return parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
