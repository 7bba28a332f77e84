import type { RunEvent } from './timeline.js';

/** Who wrote a message in a thread: the lead (through the CRM), a member of the team (the console), the agent. */
export type Sender = 'lead' | 'staff' | 'agent';

export interface ThreadMessage {
  key: string;
  from: Sender;
  text: string;
  at: string;
  /** Still streaming: tokens of an answer not recorded yet. */
  live?: boolean;
}

/** The list's filters, as the API names them (`needs_person`: handed off or flagged). */
export const CONVERSATION_FILTERS = [
  ['', 'All'],
  ['needs_person', 'Needs a person'],
  ['handoff', 'Handed off'],
  ['attention', 'Needs attention'],
  ['open', 'Open'],
  ['ended', 'Ended'],
] as const;
export type ConversationFilter = Exclude<(typeof CONVERSATION_FILTERS)[number][0], ''>;

export const isConversationFilter = (v: string | null | undefined): v is ConversationFilter =>
  !!v && CONVERSATION_FILTERS.some(([value]) => value !== '' && value === v);

/** What the list needs of a conversation to keep it in the API's order. */
export interface ListedConversation {
  runId: string;
  lastActivityAt: string;
}

/** The conversations on screen: the first page, and older pages once asked for. */
export interface ConversationListState<C extends ListedConversation> {
  items: C[];
  /** Where "Show older" continues: after the last item read from the bottom. */
  nextCursor: string | null;
  /** Whether pages below the first were read (they stay on screen when the first is read again). */
  olderRead: boolean;
}

/** Newest activity first, then the higher run id: the API's keyset order. */
const listedAfter = (a: ListedConversation, b: ListedConversation) => a.lastActivityAt < b.lastActivityAt || (a.lastActivityAt === b.lastActivityAt && a.runId < b.runId);

/**
 * The first page read again (on a live hint) merged with what is on screen. The fresh page is
 * the truth for everything down to its last item: a conversation there moved up (activity only
 * grows), and one on screen within that range but missing from it left the filter (resumed,
 * handled, ended). Below it, older pages stay as read, minus what moved into the first page,
 * so "Show older" continues where it stood and nothing shows twice.
 */
export function mergeFirstPage<C extends ListedConversation>(shown: ConversationListState<C> | null, fresh: { items: C[]; nextCursor: string | null }): ConversationListState<C> {
  const last = fresh.items[fresh.items.length - 1];
  if (!shown?.olderRead || fresh.nextCursor === null || !last) return { items: fresh.items, nextCursor: fresh.nextCursor, olderRead: false };
  const inFresh = new Set(fresh.items.map((c) => c.runId));
  const below = shown.items.filter((c) => !inFresh.has(c.runId) && listedAfter(c, last));
  return { items: [...fresh.items, ...below], nextCursor: shown.nextCursor, olderRead: true };
}

/** An older page appended below what is on screen (a conversation already shown stays where it is). */
export function appendOlder<C extends ListedConversation>(shown: ConversationListState<C>, page: { items: C[]; nextCursor: string | null }): ConversationListState<C> {
  const onScreen = new Set(shown.items.map((c) => c.runId));
  return { items: [...shown.items, ...page.items.filter((c) => !onScreen.has(c.runId))], nextCursor: page.nextCursor, olderRead: true };
}

/**
 * The thread as people read it, from the run's durable events and the tokens still streaming:
 * `user.message` events are the lead's (source `crm_webhook`) or a member's (source `user`)
 * messages, `llm.completed` events with text the agent's answers; a handoff, a resume or a
 * reply that failed show as notes between them.
 */
export function threadMessages(events: readonly RunEvent[], live: Record<number, string>): Array<ThreadMessage | { key: string; note: string; at: string }> {
  const out: Array<ThreadMessage | { key: string; note: string; at: string }> = [];
  for (const e of events) {
    const p = e.payload;
    if (e.type === 'user.message') {
      out.push({ key: `e${e.seq}`, from: p.source === 'crm_webhook' ? 'lead' : 'staff', text: String(p.content ?? ''), at: e.createdAt });
    } else if (e.type === 'llm.completed' && typeof p.content === 'string' && p.content) {
      out.push({ key: `e${e.seq}`, from: 'agent', text: p.content, at: e.createdAt });
    } else if (e.type === 'handoff.requested' && p.started !== false) {
      out.push({ key: `e${e.seq}`, note: `Handed to people: ${handoffReasonText(String(p.reason ?? ''))}`, at: e.createdAt });
    } else if (e.type === 'reply_failed') {
      out.push({ key: `e${e.seq}`, note: `The reply did not reach the lead${p.status ? ` (the CRM answered ${String(p.status)})` : ''}`, at: e.createdAt });
    } else if (e.type === 'reply.held' && p.reason === 'handoff') {
      out.push({ key: `e${e.seq}`, note: 'The agent did not answer: the conversation is with people', at: e.createdAt });
    }
  }
  for (const [seq, text] of Object.entries(live)) {
    if (text) out.push({ key: `live${seq}`, from: 'agent', text, at: '', live: true });
  }
  return out;
}

const HANDOFF_REASONS: Record<string, string> = {
  salesperson_replied: 'a salesperson wrote in the chat',
  lead_asked: 'the lead asked for a person',
  agent_requested: 'the agent asked for a person',
};
export const handoffReasonText = (reason: string) => HANDOFF_REASONS[reason] ?? reason.replace(/_/g, ' ');

export const SENDER_LABEL: Record<Sender, string> = { lead: 'Lead', staff: 'Team', agent: 'Agent' };

/** The events of the org feed (GET /v1/orgs/:orgId/events) that call a person. */
export interface OrgEvent {
  id: string;
  seq: number;
  type: string;
  data: Record<string, unknown>;
  createdAt: string;
}

export interface Notice {
  seq: number;
  type: 'handoff.requested' | 'reply.failed' | 'approval.requested';
  runId: string;
  text: string;
  createdAt: string;
}

export interface NoticesState {
  lastSeq: number;
  /** Newest first, at most MAX_NOTICES. */
  items: Notice[];
  /** Dismissed notices newer than the resume point: a replay after a reload must not bring them back. */
  dismissed: number[];
}

export const MAX_NOTICES = 5;
/** Older events replayed on connect are history, not news: the strip shows the last day only. */
export const NOTICE_MAX_AGE_MS = 24 * 3600 * 1000;

export const emptyNotices = (lastSeq = 0, dismissed: number[] = []): NoticesState => ({ lastSeq, items: [], dismissed });

/** Folds one org event into the strip; repeats (at or below lastSeq), stale and other events change nothing shown. */
export function applyOrgEvent(state: NoticesState, event: OrgEvent, now = Date.now()): NoticesState {
  if (event.seq <= state.lastSeq) return state;
  const next = { ...state, lastSeq: event.seq };
  const runId = typeof event.data.runId === 'string' ? event.data.runId : null;
  if (!runId || state.dismissed.includes(event.seq) || now - Date.parse(event.createdAt) > NOTICE_MAX_AGE_MS) return next;
  const text =
    event.type === 'handoff.requested'
      ? `A conversation was handed to people: ${handoffReasonText(String(event.data.reason ?? ''))}`
      : event.type === 'reply.failed'
        ? `A reply did not reach the lead${event.data.status ? ` (the CRM answered ${String(event.data.status)})` : ''}`
        : event.type === 'approval.requested'
          ? `An approval is waiting: ${String(event.data.toolName ?? 'a tool call')}`
          : null;
  if (!text) return next;
  const notice: Notice = { seq: event.seq, type: event.type as Notice['type'], runId, text, createdAt: event.createdAt };
  return { ...next, items: [notice, ...state.items].slice(0, MAX_NOTICES) };
}

export function dismissNotice(state: NoticesState, seq: number): NoticesState {
  const next = { ...state, items: state.items.filter((n) => n.seq !== seq), dismissed: [...state.dismissed, seq] };
  const from = resumeSeq(next);
  return { ...next, dismissed: next.dismissed.filter((d) => d > from) };
}

/** Where to resume the feed after a reload: just before the oldest notice still shown, else after everything seen (a notice only counts as seen once dismissed). */
export const resumeSeq = (state: NoticesState): number => (state.items.length ? Math.min(...state.items.map((n) => n.seq)) - 1 : state.lastSeq);
