/** The conversations screens' state logic, without a browser: the thread's messages, the notices strip, the routes. */
import { describe, expect, it } from 'vitest';
import {
  appendOlder,
  applyOrgEvent,
  dismissNotice,
  emptyNotices,
  isConversationFilter,
  MAX_NOTICES,
  mergeFirstPage,
  resumeSeq,
  threadMessages,
  type OrgEvent,
} from '../../web/src/state/conversation.js';
import { href, parseRoute, type Route } from '../../web/src/state/route.js';
import type { RunEvent } from '../../web/src/state/timeline.js';

const ORG = '00000000-0000-4000-8000-000000000001';
const RUN = '00000000-0000-4000-8000-000000000002';
const NOW = Date.parse('2026-12-06T10:00:00.000Z');
const at = new Date(NOW - 60_000).toISOString();
const ev = (seq: number, type: string, payload: Record<string, unknown> = {}): RunEvent => ({ seq, type, payload, createdAt: at });
const orgEvent = (seq: number, type: string, data: Record<string, unknown> = { runId: RUN }, createdAt = at): OrgEvent => ({ id: `e${seq}`, seq, type, data, createdAt });

describe('a thread as people read it', () => {
  it('marks who wrote each message: the lead (CRM), the team (console) and the agent; tool steps are left out', () => {
    const events = [
      ev(1, 'run.started'),
      ev(2, 'user.message', { source: 'crm_webhook', content: 'Do you ship to Porto?' }),
      ev(3, 'llm.completed', { content: '', toolCalls: [{ name: 'knowledge_search' }] }),
      ev(4, 'tool.completed', { name: 'knowledge_search' }),
      ev(5, 'llm.completed', { content: 'Yes, in 3 days.' }),
      ev(6, 'user.message', { source: 'user', content: 'Ana here, I will call you.' }),
    ];
    expect(threadMessages(events, {})).toEqual([
      { key: 'e2', from: 'lead', text: 'Do you ship to Porto?', at },
      { key: 'e5', from: 'agent', text: 'Yes, in 3 days.', at },
      { key: 'e6', from: 'staff', text: 'Ana here, I will call you.', at },
    ]);
  });

  it('shows a handoff, a held reply and a failed reply as notes, and tokens still streaming as a live agent message', () => {
    const events = [
      ev(1, 'user.message', { source: 'crm_webhook', content: 'Can I talk to a human?' }),
      ev(2, 'handoff.requested', { reason: 'lead_asked', started: true }),
      ev(3, 'handoff.requested', { reason: 'lead_asked', started: false }),
      ev(4, 'reply.held', { reason: 'handoff' }),
      ev(5, 'reply_failed', { status: 403 }),
    ];
    expect(threadMessages(events, { 6: 'Sure, one mo' })).toEqual([
      { key: 'e1', from: 'lead', text: 'Can I talk to a human?', at },
      { key: 'e2', note: 'Handed to people: the lead asked for a person', at },
      { key: 'e4', note: 'The agent did not answer: the conversation is with people', at },
      { key: 'e5', note: 'The reply did not reach the lead (the CRM answered 403)', at },
      { key: 'live6', from: 'agent', text: 'Sure, one mo', at: '', live: true },
    ]);
  });

  it('knows the list filters the API takes', () => {
    expect(['needs_person', 'handoff', 'attention', 'open', 'ended'].every(isConversationFilter)).toBe(true);
    expect(isConversationFilter('')).toBe(false);
    expect(isConversationFilter('asleep')).toBe(false);
    expect(isConversationFilter(undefined)).toBe(false);
  });
});

describe('the notices strip', () => {
  it('turns handoffs, failed replies and approvals into notices, newest first, and ignores repeats and other events', () => {
    let s = emptyNotices();
    s = applyOrgEvent(s, orgEvent(1, 'handoff.requested', { runId: RUN, reason: 'agent_requested' }), NOW);
    s = applyOrgEvent(s, orgEvent(2, 'run.failed'), NOW);
    s = applyOrgEvent(s, orgEvent(3, 'reply.failed', { runId: RUN, status: 422 }), NOW);
    s = applyOrgEvent(s, orgEvent(4, 'approval.requested', { runId: RUN, toolName: 'crm_update' }), NOW);
    s = applyOrgEvent(s, orgEvent(3, 'reply.failed', { runId: RUN, status: 422 }), NOW);
    expect(s.lastSeq).toBe(4);
    expect(s.items.map((n) => [n.seq, n.type, n.text])).toEqual([
      [4, 'approval.requested', 'An approval is waiting: crm_update'],
      [3, 'reply.failed', 'A reply did not reach the lead (the CRM answered 422)'],
      [1, 'handoff.requested', 'A conversation was handed to people: the agent asked for a person'],
    ]);
  });

  it('keeps the last few, skips what is older than a day, and never brings back a dismissed notice on replay', () => {
    let s = emptyNotices();
    s = applyOrgEvent(s, orgEvent(1, 'handoff.requested', { runId: RUN, reason: 'lead_asked' }, new Date(NOW - 25 * 3600 * 1000).toISOString()), NOW);
    expect(s.items).toEqual([]);
    for (let seq = 2; seq <= 9; seq++) s = applyOrgEvent(s, orgEvent(seq, 'handoff.requested', { runId: RUN, reason: 'lead_asked' }), NOW);
    expect(s.items.map((n) => n.seq)).toEqual([9, 8, 7, 6, 5].slice(0, MAX_NOTICES));
    expect(resumeSeq(s)).toBe(4);

    s = dismissNotice(s, 8);
    expect(s.items.map((n) => n.seq)).toEqual([9, 7, 6, 5]);
    // A reload resumes just before the oldest shown notice: the dismissed one replays and stays hidden.
    let replay = emptyNotices(resumeSeq(s), s.dismissed);
    for (let seq = resumeSeq(s) + 1; seq <= 9; seq++) replay = applyOrgEvent(replay, orgEvent(seq, 'handoff.requested', { runId: RUN, reason: 'lead_asked' }), NOW);
    expect(replay.items.map((n) => n.seq)).toEqual([9, 7, 6, 5]);

    // Dismissing the oldest moves the resume point past it; dismissals behind it are forgotten.
    for (const seq of [5, 6, 7]) s = dismissNotice(s, seq);
    expect(resumeSeq(s)).toBe(8);
    expect(s.dismissed).toEqual([]);
    s = dismissNotice(s, 9);
    expect(resumeSeq(s)).toBe(9);
  });
});

describe('the conversations list kept live', () => {
  // Conversations a…h, newest activity first; a time per letter, later letters older.
  const c = (name: string, minutesAgo: number) => ({ runId: name, lastActivityAt: new Date(NOW - minutesAgo * 60_000).toISOString() });
  const names = (s: { items: Array<{ runId: string }> }) => s.items.map((i) => i.runId).join('');

  it('shows the first page as read while nothing older was asked for', () => {
    let s = mergeFirstPage(null, { items: [c('a', 1), c('b', 2)], nextCursor: 'after-b' });
    expect(s).toMatchObject({ nextCursor: 'after-b', olderRead: false });
    s = mergeFirstPage(s, { items: [c('c', 0), c('a', 1)], nextCursor: 'after-a' });
    expect(names(s)).toBe('ca');
    expect(s.nextCursor).toBe('after-a');
  });

  it('keeps older pages below a first page read again: moved ones on top once, pushed-down ones kept, ones that left the filter gone', () => {
    let s = mergeFirstPage(null, { items: [c('a', 1), c('b', 2), c('c', 3)], nextCursor: 'after-c' });
    s = appendOlder(s, { items: [c('d', 4), c('e', 5), c('f', 6)], nextCursor: 'after-f' });
    expect(names(s)).toBe('abcdef');
    // e gets a lead's message and b leaves the filter (resumed): the fresh first page ends at c,
    // and what was read below c stays as read, without e.
    s = mergeFirstPage(s, { items: [c('e', 0), c('a', 1), c('c', 3)], nextCursor: 'after-c2' });
    expect(names(s)).toBe('eacdf');
    expect(s).toMatchObject({ nextCursor: 'after-f', olderRead: true });
    // Three new threads push c out of the first page: it stays on screen, below the fresh page.
    s = mergeFirstPage(s, { items: [c('x', -3), c('y', -2), c('z', -1)], nextCursor: 'after-z' });
    expect(names(s)).toBe('xyzeacdf');
    // A first page with no more behind it is the whole list.
    s = mergeFirstPage(s, { items: [c('a', 1)], nextCursor: null });
    expect(names(s)).toBe('a');
    expect(s).toMatchObject({ nextCursor: null, olderRead: false });
  });

  it('appends an older page without repeating a conversation already on screen', () => {
    const s = appendOlder(mergeFirstPage(null, { items: [c('g', 0), c('a', 1)], nextCursor: 'after-a' }), { items: [c('g', 7), c('h', 8)], nextCursor: null });
    expect(names(s)).toBe('gah');
    expect(s.nextCursor).toBeNull();
  });
});

describe('conversation routes', () => {
  it('round-trips the list (with its filters), a thread and the webhooks screen', () => {
    const routes: Route[] = [
      { name: 'conversations', orgId: ORG },
      { name: 'conversations', orgId: ORG, status: 'needs_person', agentId: RUN },
      { name: 'conversation', orgId: ORG, runId: RUN },
      { name: 'webhooks', orgId: ORG },
    ];
    for (const route of routes) expect(parseRoute(href(route))).toEqual(route);
    expect(parseRoute(`#/orgs/${ORG}/conversations/not-a-run`).name).toBe('not-found');
  });
});
