/** The conversations screens' state logic, without a browser: the thread's messages, the notices strip, the routes. */
import { describe, expect, it } from 'vitest';
import {
  applyOrgEvent,
  dismissNotice,
  emptyNotices,
  isConversationFilter,
  MAX_NOTICES,
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
