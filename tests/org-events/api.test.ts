import type pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { orgEventId } from '../../lib/org-events.js';
import { startWebhookReceiver, type WebhookReceiver } from '../fakes/webhook-receiver.js';
import { signUserToken } from '../support/auth.js';
import { createOrgWithMembers } from '../support/db.js';
import { seedOrg, startFullTestApp, type FullTestApp, type SeededOrg } from '../support/full-app.js';

/**
 * Org webhook endpoints and the org-wide live feed, through the API on the real stack: an agent
 * worker runs the runs and delivers the events to a fake receiver that verifies signatures as
 * the Standard Webhooks specification says.
 */

interface FeedEvent {
  id: string;
  event: string;
  data: { id: string; seq: number; type: string; data: Record<string, unknown> };
}

/** An SSE client: parses `id`/`event`/`data` blocks as they arrive. */
async function openFeed(url: string, headers: Record<string, string>) {
  const abort = new AbortController();
  const response = await fetch(url, { headers, signal: abort.signal });
  const received: FeedEvent[] = [];
  const done = (async () => {
    if (response.status !== 200) return;
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for (;;) {
        const { done: finished, value } = await reader.read();
        if (finished) break;
        buffer += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const id = /^id: (.*)$/m.exec(block)?.[1];
          if (id) received.push({ id, event: /^event: (.*)$/m.exec(block)![1]!, data: JSON.parse(/^data: (.*)$/m.exec(block)![1]!) });
        }
      }
    } catch {
      // Closed by the test.
    }
  })();
  return { status: response.status, received, close: () => abort.abort(), done };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('org webhook endpoints and the org event feed', () => {
  let full: FullTestApp;
  let admin: pg.Pool;
  let baseUrl: string;
  let receiver: WebhookReceiver;
  let a: SeededOrg;
  let b: SeededOrg;

  beforeAll(async () => {
    receiver = await startWebhookReceiver();
    full = await startFullTestApp({ agentWorker: true });
    admin = full.admin;
    baseUrl = await full.app.listen({ host: '127.0.0.1', port: 0 });
    [a, b] = await Promise.all([seedOrg(full, 'a'), seedOrg(full, 'b')]);
  });

  afterAll(async () => {
    await full?.close();
    await receiver?.close();
  });

  beforeEach(() => {
    full.llm!.reset();
    receiver.received.length = 0;
    receiver.mode = 'up';
  });

  const as = (token: string) => ({ authorization: `Bearer ${token}` });
  const inject = (method: 'GET' | 'POST' | 'DELETE', url: string, token: string, payload?: Record<string, unknown>) =>
    full.app.inject({ method, url, headers: as(token), ...(payload ? { payload } : {}) });

  /** A fresh org (owner, admin, member) with an endpoint at the receiver, created through the API. */
  async function orgWithEndpoint(eventTypes: string[] = []) {
    const org = await createOrgWithMembers(admin, ['owner', 'admin', 'member']);
    const adminToken = await signUserToken(org.userWithRole('admin'));
    const created = await inject('POST', `/v1/orgs/${org.orgId}/webhook-endpoints`, adminToken, { url: receiver.url, description: 'Ops pager', eventTypes });
    expect(created.statusCode, created.body).toBe(201);
    receiver.secret = created.json().secret;
    return { org, adminToken, memberToken: await signUserToken(org.userWithRole('member')), endpoint: created.json() };
  }

  /** A run of a new agent whose model call is rejected (400): the run fails, run.failed is published. */
  async function failRun(orgId: string, token: string) {
    const agent = await inject('POST', `/v1/orgs/${orgId}/agents`, token, { name: 'Failing agent', model: 'test/model' });
    full.llm!.enqueue({ kind: 'error', status: 400, message: 'The model does not exist' });
    const run = await inject('POST', `/v1/orgs/${orgId}/agents/${agent.json().id}/runs`, token, { input: 'Hello' });
    expect(run.statusCode, run.body).toBe(201);
    return run.json().id as string;
  }

  it('creates an endpoint with a whsec_ secret shown once, stored encrypted, audited; lists and gets it without the secret', async () => {
    const { org, adminToken, endpoint } = await orgWithEndpoint(['run.failed']);
    expect(endpoint).toMatchObject({ url: receiver.url, description: 'Ops pager', eventTypes: ['run.failed'], createdBy: org.userWithRole('admin') });
    expect(endpoint.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);

    const stored = await admin.query(`select secret from public.webhook_endpoints where id = $1`, [endpoint.id]);
    expect(stored.rows[0].secret).toMatch(/^v1\./);
    expect(stored.rows[0].secret).not.toContain(endpoint.secret.slice(6, 20));

    const list = await inject('GET', `/v1/orgs/${org.orgId}/webhook-endpoints`, adminToken);
    expect(list.statusCode).toBe(200);
    expect(list.json().items).toEqual([{ id: endpoint.id, url: receiver.url, description: 'Ops pager', eventTypes: ['run.failed'], createdBy: org.userWithRole('admin'), createdAt: endpoint.createdAt }]);
    expect(list.body).not.toContain('whsec_');
    const one = await inject('GET', `/v1/orgs/${org.orgId}/webhook-endpoints/${endpoint.id}`, adminToken);
    expect(one.json()).toEqual(list.json().items[0]);

    const audit = await admin.query(`select action, target_id, metadata from public.audit_log where org_id = $1 and action like 'webhook_endpoint.%'`, [org.orgId]);
    expect(audit.rows).toEqual([{ action: 'webhook_endpoint.created', target_id: endpoint.id, metadata: { url: receiver.url, eventTypes: ['run.failed'] } }]);
  });

  it('refuses URLs the SSRF guard refuses, non-https URLs and unknown event types, naming the field', async () => {
    for (const [url, field] of [
      ['https://10.0.0.7/hooks', 'body.url'],
      ['https://169.254.169.254/latest/meta-data', 'body.url'],
      ['ftp://93.184.215.14/x', 'body.url'],
      ['http://93.184.215.14/plain-http', 'body.url'],
    ] as const) {
      const res = await inject('POST', `/v1/orgs/${a.orgId}/webhook-endpoints`, a.adminToken, { url });
      expect(res.statusCode, url).toBe(400);
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(res.json().errors[0].path, url).toBe(field);
    }
    const unknownType = await inject('POST', `/v1/orgs/${a.orgId}/webhook-endpoints`, a.adminToken, { url: 'https://93.184.215.14/x', eventTypes: ['run.exploded'] });
    expect(unknownType.statusCode).toBe(400);
    expect(unknownType.json().errors[0].path).toMatch(/^body\.eventTypes/);
  });

  it('members get 403, other orgs 404, and another org\'s endpoint id answers 404 everywhere', async () => {
    for (const [method, url] of [
      ['GET', `/v1/orgs/${a.orgId}/webhook-endpoints`],
      ['GET', `/v1/orgs/${a.orgId}/webhook-endpoints/${a.ids.endpointId}/deliveries`],
      ['DELETE', `/v1/orgs/${a.orgId}/webhook-endpoints/${a.ids.endpointId}`],
    ] as const) {
      expect((await inject(method, url, a.memberToken)).statusCode, `${method} ${url} as member`).toBe(403);
      expect((await inject(method, url, b.owner)).statusCode, `${method} ${url} as B`).toBe(404);
    }
    expect((await inject('POST', `/v1/orgs/${a.orgId}/webhook-endpoints`, a.memberToken, { url: receiver.url })).statusCode).toBe(403);
    // B's admin, in B's own org, naming A's endpoint.
    for (const method of ['GET', 'DELETE'] as const) {
      const res = await inject(method, `/v1/orgs/${b.orgId}/webhook-endpoints/${a.ids.endpointId}`, b.owner);
      expect(res.statusCode).toBe(404);
      expect(res.json().type).toBe('https://gpt-agent-platform.dev/problems/not-found');
    }
    expect((await inject('GET', `/v1/orgs/${b.orgId}/webhook-endpoints/${a.ids.endpointId}/deliveries`, b.owner)).statusCode).toBe(404);
    expect((await admin.query(`select 1 from public.webhook_endpoints where id = $1`, [a.ids.endpointId])).rowCount).toBe(1);
  });

  it('a failed run reaches the endpoint signed, and the delivery log shows the attempts (receiver down, then up)', async () => {
    const { org, adminToken, endpoint } = await orgWithEndpoint();
    receiver.mode = 'down';
    const runId = await failRun(org.orgId, adminToken);
    const deliveriesUrl = `/v1/orgs/${org.orgId}/webhook-endpoints/${endpoint.id}/deliveries`;

    const pending = await waitFor('a failed attempt in the log', async () => {
      const page = (await inject('GET', deliveriesUrl, adminToken)).json();
      return page.items[0]?.attempts >= 1 ? page.items[0] : undefined;
    });
    expect(pending).toMatchObject({ eventType: 'run.failed', status: 'pending', lastStatusCode: null, lastError: expect.stringMatching(/could not reach/) });
    expect(Date.parse(pending.nextAttemptAt)).toBeGreaterThan(Date.parse(pending.attemptLog[0].attemptedAt));
    receiver.mode = 'up';

    const delivered = await waitFor('the delivery', async () => {
      const page = (await inject('GET', deliveriesUrl, adminToken)).json();
      return page.items[0]?.status === 'delivered' ? page.items[0] : undefined;
    });
    expect(delivered.eventId).toBe(orgEventId(org.orgId, 'run.failed', runId));
    expect(delivered.attemptLog.length).toBe(delivered.attempts);
    expect(delivered.attemptLog.at(-1)).toMatchObject({ statusCode: 204, error: null });
    expect(delivered).toMatchObject({ lastStatusCode: 204, lastError: null, nextAttemptAt: null });
    expect(receiver.received).toHaveLength(1);
    expect(receiver.received[0]!.verified).toBe(true);
    expect(JSON.parse(receiver.received[0]!.body)).toMatchObject({ type: 'run.failed', data: { runId } });
  });

  it('deleting an endpoint stops its deliveries and is audited', async () => {
    const { org, adminToken, endpoint } = await orgWithEndpoint();
    const del = await inject('DELETE', `/v1/orgs/${org.orgId}/webhook-endpoints/${endpoint.id}`, adminToken);
    expect(del.statusCode).toBe(204);
    await failRun(org.orgId, adminToken);
    await waitFor('the run.failed event', async () => (await admin.query(`select 1 from public.org_events where org_id = $1`, [org.orgId])).rowCount === 1);
    expect((await admin.query(`select 1 from public.webhook_deliveries where org_id = $1`, [org.orgId])).rowCount).toBe(0);
    expect((await inject('GET', `/v1/orgs/${org.orgId}/webhook-endpoints/${endpoint.id}`, adminToken)).statusCode).toBe(404);
    const audit = await admin.query(`select action from public.audit_log where org_id = $1 and target_id = $2 order by id`, [org.orgId, endpoint.id]);
    expect(audit.rows.map((r: { action: string }) => r.action)).toEqual(['webhook_endpoint.created', 'webhook_endpoint.deleted']);
  });

  it('the org feed shows events live to members, resumes after Last-Event-ID, and is 404 to other orgs', async () => {
    const { org, adminToken, memberToken } = await orgWithEndpoint();
    const feedUrl = `${baseUrl}/v1/orgs/${org.orgId}/events`;
    const feed = await openFeed(feedUrl, as(memberToken));
    expect(feed.status).toBe(200);

    const runId = await failRun(org.orgId, adminToken);
    await waitFor('the live event', () => feed.received.length === 1);
    expect(feed.received[0]).toMatchObject({ id: '1', event: 'run.failed', data: { seq: 1, type: 'run.failed', id: orgEventId(org.orgId, 'run.failed', runId), data: { runId } } });
    feed.close();
    await feed.done;

    // Two more events while nobody listens; a reconnect with Last-Event-ID gets exactly those.
    const second = await failRun(org.orgId, adminToken);
    const third = await failRun(org.orgId, adminToken);
    await waitFor('three events', async () => (await admin.query(`select 1 from public.org_events where org_id = $1`, [org.orgId])).rowCount === 3);
    const resumed = await openFeed(feedUrl, { ...as(memberToken), 'last-event-id': '1' });
    await waitFor('the missed events', () => resumed.received.length === 2);
    expect(resumed.received.map((e) => e.id)).toEqual(['2', '3']);
    expect(resumed.received.map((e) => e.data.data.runId).sort()).toEqual([second, third].sort());
    resumed.close();
    await resumed.done;

    const outsider = await openFeed(feedUrl, as(b.owner));
    expect(outsider.status).toBe(404);
    expect(outsider.received).toEqual([]);
  });
});
