/** The console's state logic, without a browser: SSE parsing, the run timeline, routes, usage bars, sign-in options and callbacks. */
import { describe, expect, it } from 'vitest';
import { builtinTools } from '../../activities/tools/builtin.js';
import { createCrmTools } from '../../activities/tools/crm-tools.js';
import { chartBars } from '../../web/src/state/usage.js';
import { forgetOrg, homeRoute, membership, rememberedOrg, rememberOrg, type OrgStore } from '../../web/src/state/org-memory.js';
import { href, parseRoute, type Route } from '../../web/src/state/route.js';
import { callbackFailure, returnUrl, signInOptions } from '../../web/src/state/sign-in.js';
import { SseParser } from '../../web/src/state/sse.js';
import { applyDelta, applyEvent, describeEvent, emptyTimeline, type RunEvent } from '../../web/src/state/timeline.js';
import { AGENT_TOOLS } from '../../web/src/state/tools.js';

const ORG = '00000000-0000-4000-8000-000000000001';
const RUN = '00000000-0000-4000-8000-000000000002';
const at = '2026-12-06T10:00:00.000Z';
const ev = (seq: number, type: string, payload: Record<string, unknown> = {}): RunEvent => ({ seq, type, payload, createdAt: at });

describe('SseParser', () => {
  it('parses events split across chunks at any byte, with ids, names, comments and multi-line data', () => {
    const stream = ': stream of run events\n\nid: 1\nevent: run.started\ndata: {"seq":1}\n\nevent: delta\ndata: {"seq":2,\ndata: "text":"Hi"}\r\n\r\n';
    for (let split = 1; split < stream.length; split += 1) {
      const parser = new SseParser();
      const out = [...parser.feed(stream.slice(0, split)), ...parser.feed(stream.slice(split))];
      expect(out).toEqual([
        { id: '1', event: 'run.started', data: '{"seq":1}' },
        { id: '1', event: 'delta', data: '{"seq":2,\n"text":"Hi"}' },
      ]);
    }
  });

  it('holds back an event until its blank line arrives', () => {
    const parser = new SseParser();
    expect(parser.feed('data: x\n')).toEqual([]);
    expect(parser.feed('\n')).toEqual([{ event: 'message', data: 'x' }]);
  });
});

describe('run timeline', () => {
  it('sums tokens and cost of recorded LLM steps, ignores repeated events, and drops live tokens once their step is recorded', () => {
    let t = emptyTimeline();
    t = applyEvent(t, ev(1, 'run.started'));
    t = applyDelta(t, { seq: 2, text: 'Hel' });
    t = applyDelta(t, { seq: 2, text: 'lo' });
    expect(t.live).toEqual({ 2: 'Hello' });
    const llm = ev(2, 'llm.completed', { model: 'm', content: 'Hello', usage: { inputTokens: 10, outputTokens: 5 }, costUsd: 0.001 });
    t = applyEvent(t, llm);
    t = applyEvent(t, llm);
    expect(t.live).toEqual({});
    expect([t.inputTokens, t.outputTokens, t.costUsd]).toEqual([10, 5, 0.001]);
    expect(t.events.map((e) => e.seq)).toEqual([1, 2]);
    // A delta of a step already recorded is stale.
    expect(applyDelta(t, { seq: 2, text: 'late' }).live).toEqual({});
  });

  it('lists an approval as pending from its request until its decision or the end of the run', () => {
    let t = applyEvent(emptyTimeline(), ev(3, 'approval.requested', { approvalId: 'a1', kind: 'approval', toolName: 'crm_add_note', arguments: { note: 'x' } }));
    expect(t.pending).toEqual([{ approvalId: 'a1', seq: 3, kind: 'approval', toolName: 'crm_add_note', arguments: { note: 'x' }, requestedAt: at }]);
    t = applyEvent(t, ev(4, 'approval.decided', { approvalId: 'a1', status: 'approved' }));
    expect(t.pending).toEqual([]);
    const ended = applyEvent(applyEvent(emptyTimeline(), ev(1, 'approval.requested', { approvalId: 'a2' })), ev(2, 'run.failed'));
    expect(ended.pending).toEqual([]);
    expect(ended.finished).toBe(true);
  });

  it('describes events in words', () => {
    expect(describeEvent(ev(2, 'llm.completed', { model: 'gpt', content: '', toolCalls: [{}, {}], usage: { inputTokens: 3, outputTokens: 4 } }))).toBe('gpt: asked for 2 tool calls (3 in / 4 out tokens)');
    expect(describeEvent(ev(5, 'approval.decided', { status: 'rejected' }))).toBe('Approval rejected');
    expect(describeEvent(ev(6, 'follow_up.resumed'))).toBe('follow up resumed');
  });
});

describe('routes', () => {
  it('round-trips every screen through the URL fragment', () => {
    const routes: Route[] = [
      { name: 'home' },
      { name: 'signin' },
      { name: 'invite', token: 'tok en/1' },
      { name: 'new-org' },
      { name: 'agents', orgId: ORG },
      { name: 'new-agent', orgId: ORG },
      { name: 'agent', orgId: ORG, agentId: RUN },
      { name: 'runs', orgId: ORG },
      { name: 'runs', orgId: ORG, agentId: RUN, status: 'awaiting_approval' },
      { name: 'run', orgId: ORG, runId: RUN },
      { name: 'approvals', orgId: ORG },
      { name: 'conversations', orgId: ORG },
      { name: 'crm', orgId: ORG },
      { name: 'members', orgId: ORG },
      { name: 'api-keys', orgId: ORG },
      { name: 'knowledge', orgId: ORG },
      { name: 'usage', orgId: ORG },
    ];
    for (const route of routes) expect(parseRoute(href(route))).toEqual(route);
  });

  it('sends unknown paths and malformed ids to not-found', () => {
    expect(parseRoute('#/orgs/not-a-uuid/agents').name).toBe('not-found');
    expect(parseRoute(`#/orgs/${ORG}/runs/123`).name).toBe('not-found');
    expect(parseRoute(`#/orgs/${ORG}/secrets`).name).toBe('not-found');
  });
});

describe('usage chart', () => {
  it('has a bar per day, zero for days without usage, scaled to the busiest day', () => {
    const { bars, max } = chartBars(
      [
        { day: '2026-12-01', runs: 1, inputTokens: 50, outputTokens: 50, costUsd: 0.1 },
        { day: '2026-12-03', runs: 2, inputTokens: 1, outputTokens: 0, costUsd: 0 },
      ],
      '2026-12-01',
      '2026-12-04',
      'inputTokens',
    );
    expect(max).toBe(100);
    expect(bars.map((b) => [b.day, b.value, b.height])).toEqual([
      ['2026-12-01', 100, 100],
      ['2026-12-02', 0, 0],
      ['2026-12-03', 1, 1],
      ['2026-12-04', 0, 0],
    ]);
  });
});

describe('agent tools offered by the editor', () => {
  it('are exactly the tools the worker registers', () => {
    const crmTools = createCrmTools({} as Parameters<typeof createCrmTools>[0]);
    const registered = [...builtinTools, ...crmTools].map((t) => t.name).sort();
    expect(AGENT_TOOLS.map((t) => t.name).sort()).toEqual(registered);
  });
});

describe('sign-in options and callbacks', () => {
  it('offers the email forms and the enabled OAuth providers GoTrue reports, in a fixed order, ignoring what it cannot offer', () => {
    const settings = { external: { email: true, phone: true, anonymous_users: true, github: true, google: true, azure: false, saml: true, keycloak: true }, disable_signup: false };
    expect(signInOptions(settings)).toEqual({
      email: true,
      oauth: [
        { id: 'google', label: 'Google' },
        { id: 'github', label: 'GitHub' },
      ],
    });
    expect(signInOptions({ external: { email: false, github: 'yes' } })).toEqual({ email: false, oauth: [] });
    expect(signInOptions(null)).toEqual({ email: false, oauth: [] });
    expect(signInOptions({ external: null })).toEqual({ email: false, oauth: [] });
  });

  it('comes back to the same page and route, without a query', () => {
    expect(returnUrl('https://console.example.com/?code=stale#/invite/inv_abc')).toBe('https://console.example.com/#/invite/inv_abc');
    expect(returnUrl('http://127.0.0.1:3000/')).toBe('http://127.0.0.1:3000/');
  });

  it('reads a failed callback from the fragment or the query, and puts the route it started from back', () => {
    // Implicit-style: only the fragment, which no longer holds the route.
    expect(callbackFailure('https://c.example/#error=access_denied&error_code=otp_expired&error_description=Email+link+is+invalid+or+has+expired', '#/invite/inv_abc')).toEqual({
      message: 'Email link is invalid or has expired',
      cleanUrl: 'https://c.example/#/invite/inv_abc',
    });
    // PKCE: the query too; anything else in the query stays.
    expect(callbackFailure('https://c.example/?x=1&error=access_denied&error_code=access_denied&error_description=The+user+denied+access#error=access_denied', null)).toEqual({
      message: 'The user denied access',
      cleanUrl: 'https://c.example/?x=1#/',
    });
    // Error in the query only (the fragment still the route): the route stays.
    expect(callbackFailure('https://c.example/?error=server_error#/orgs/new', '#/invite/x')).toEqual({ message: 'server_error', cleanUrl: 'https://c.example/#/orgs/new' });
    // A remembered route that is not a route is not restored.
    expect(callbackFailure('https://c.example/#error=x', 'javascript:alert(1)')?.cleanUrl).toBe('https://c.example/#/');
    // No error: nothing to do, whatever the route or a code.
    expect(callbackFailure('https://c.example/?code=abc#/invite/inv_abc', '#/')).toBeNull();
    expect(callbackFailure('https://c.example/#/orgs/new', null)).toBeNull();
  });
});

describe('remembered org', () => {
  const OTHER = '00000000-0000-4000-8000-000000000003';
  const store = (): OrgStore & { map: Map<string, string> } => {
    const map = new Map<string, string>();
    return { map, getItem: (k) => map.get(k) ?? null, setItem: (k, v) => void map.set(k, v), removeItem: (k) => void map.delete(k) };
  };

  it('is kept per user, so another user signing in on the same browser is not sent to it', () => {
    const s = store();
    rememberOrg(s, 'user-a', ORG);
    expect(rememberedOrg(s, 'user-a')).toBe(ORG);
    expect(rememberedOrg(s, 'user-b')).toBeNull();
    s.map.set('console.org:user-b', 'not-an-id');
    expect(rememberedOrg(s, 'user-b')).toBeNull();
  });

  it('is forgotten only while it is still the one remembered', () => {
    const s = store();
    rememberOrg(s, 'user-a', OTHER);
    forgetOrg(s, 'user-a', ORG);
    expect(rememberedOrg(s, 'user-a')).toBe(OTHER);
    forgetOrg(s, 'user-a', OTHER);
    expect(rememberedOrg(s, 'user-a')).toBeNull();
  });

  it('opens at once before the org list answers, and otherwise follows the list', () => {
    expect(homeRoute(ORG, undefined)).toEqual({ name: 'agents', orgId: ORG });
    expect(homeRoute(null, undefined)).toBeNull();
    expect(homeRoute(ORG, [{ id: OTHER }, { id: ORG }])).toEqual({ name: 'agents', orgId: ORG });
    expect(homeRoute(ORG, [{ id: OTHER }])).toEqual({ name: 'agents', orgId: OTHER });
    expect(homeRoute(null, [{ id: OTHER }])).toEqual({ name: 'agents', orgId: OTHER });
    expect(homeRoute(ORG, [])).toEqual({ name: 'new-org' });
  });

  it('tells an org left since the last visit (moved on quietly) from one asked for by link (an error)', () => {
    expect(membership(ORG, undefined, ORG)).toBe('checking');
    expect(membership(ORG, [{ id: ORG }], ORG)).toBe('member');
    expect(membership(ORG, [{ id: OTHER }], ORG)).toBe('gone');
    expect(membership(ORG, [{ id: OTHER }], null)).toBe('not-member');
    expect(membership(ORG, [], OTHER)).toBe('not-member');
  });
});
