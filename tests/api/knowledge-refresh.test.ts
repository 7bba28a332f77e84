import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { ScheduleNotFoundError, ScheduleOverlapPolicy } from '@temporalio/client';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../api/app.js';
import { searchKnowledge } from '../../activities/knowledge/search.js';
import { withPrincipal } from '../../lib/db.js';
import type { KnowledgeRefreshResult } from '../../workflows/knowledge-refresh.js';
import type { FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { signUserToken } from '../support/auth.js';
import { createOrgWithMembers } from '../support/db.js';
import { startKnowledgeStack, type KnowledgeStack } from '../support/knowledge.js';
import type { TestTemporal } from '../support/temporal.js';

/**
 * Scheduled re-fetch of web pages in the knowledge base, on the real stack: the API keeps a
 * Temporal Schedule per page (`knowledge-refresh:<documentId>`); its knowledgeRefresh workflow
 * runs on a knowledge worker against a local site whose pages the tests change, and against the
 * fake LLM's /v1/embeddings, whose requests show whether any embedding work was done.
 */
let stack: KnowledgeStack;
let temporal: TestTemporal;
let pool: pg.Pool;
let admin: pg.Pool;
let llm: FakeLlmServer;
let app: App;
let siteUrl: string;
let taskQueue: string;
let orgId: string;
let ownerToken: string;
let adminToken: string;
let memberToken: string;
let outsiderToken: string;

/** The local site: each page's HTML and whether it sends (and honours) an ETag. */
const pages = new Map<string, { html: string; etag: boolean; status?: number }>();
const siteRequests: Array<{ path: string; headers: IncomingHttpHeaders }> = [];

beforeAll(async () => {
  stack = await startKnowledgeStack({
    queuePrefix: 'knowledge-refresh',
    site: (req, res) => {
      siteRequests.push({ path: req.url ?? '', headers: req.headers });
      const page = pages.get(req.url ?? '');
      if (!page) return void res.writeHead(404).end('not here');
      if (page.status) return void res.writeHead(page.status).end('down');
      const etag = `"${createHash('sha256').update(page.html).digest('hex').slice(0, 16)}"`;
      if (page.etag && req.headers['if-none-match'] === etag) return void res.writeHead(304, { etag }).end();
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', ...(page.etag ? { etag } : {}) });
      res.end(page.html);
    },
  });
  ({ temporal, pool, admin, llm, app, siteUrl, taskQueue } = stack);
  const org = await createOrgWithMembers(admin, ['owner', 'admin', 'member']);
  orgId = org.orgId;
  ownerToken = await signUserToken(org.userWithRole('owner'));
  adminToken = await signUserToken(org.userWithRole('admin'));
  memberToken = await signUserToken(org.userWithRole('member'));
  outsiderToken = await signUserToken((await createOrgWithMembers(admin, ['owner'])).userWithRole('owner'));
});

afterAll(() => stack?.close());

const api = (method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', url: string, payload?: unknown, token = adminToken) =>
  app.inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(payload === undefined ? {} : { payload: payload as object }) });

async function settled(id: string, revision = 1) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const doc = (await api('GET', `/v1/orgs/${orgId}/knowledge/${id}`, undefined, memberToken)).json();
    if (doc.revision === revision && (doc.status === 'ready' || doc.status === 'failed')) return doc;
    if (Date.now() > deadline) throw new Error(`document ${id} still ${doc.status} (revision ${doc.revision})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A ready web page in the knowledge base with a re-fetch schedule. */
async function addPage(path: string, html: string, opts: { etag?: boolean; every?: string } = {}) {
  pages.set(path, { html, etag: opts.etag ?? true });
  const res = await api('POST', `/v1/orgs/${orgId}/knowledge`, { url: `${siteUrl}${path}`, title: path.slice(1), refresh: { every: opts.every ?? '1h' } });
  expect(res.statusCode).toBe(201);
  return settled(res.json().id);
}

const schedule = (documentId: string) => temporal.client.schedule.getHandle(`knowledge-refresh:${documentId}`);
/** The schedule's intervals, in milliseconds. */
const intervals = async (documentId: string) => ((await schedule(documentId).describe()).spec.intervals ?? []).map((i) => i.every);
const chunkRows = async (documentId: string) =>
  (await admin.query<{ id: string; passage: string }>(`select id, passage from public.knowledge_chunks where document_id = $1 order by position`, [documentId])).rows;
const embeddingCalls = () => llm.requests.filter((r) => r.path === '/v1/embeddings').length;
const search = (query: string) => withPrincipal(pool, { kind: 'worker', orgId }, (tx) => searchKnowledge(tx, { orgId, query, limit: 5 }));

let manualRuns = 0;
/** Runs the schedule's action now, as the schedule would: same workflow type and arguments. */
async function refreshNow(documentId: string): Promise<KnowledgeRefreshResult> {
  const { action } = await schedule(documentId).describe();
  return temporal.client.workflow.execute('knowledgeRefresh', { taskQueue: action.taskQueue, workflowId: `${action.workflowId}-test-${++manualRuns}`, args: action.args });
}

describe('knowledge web pages re-fetched on a schedule', () => {
  it('keeps a Temporal Schedule per page: created with the interval asked for, changed and removed by PATCH, deleted with the document', async () => {
    const doc = await addPage('/terms', '<html><body><h1>Terms</h1><p>Payment is due within 14 days.</p></body></html>', { every: '6h' });
    expect(doc.refresh).toMatchObject({ every: '6h', scheduleId: `knowledge-refresh:${doc.id}`, lastOutcome: null, lastError: null });
    expect(Date.parse(doc.refresh.nextRunAt)).toBeGreaterThan(Date.now());
    expect(Date.parse(doc.refresh.nextRunAt)).toBeLessThanOrEqual(Date.now() + 6 * 3600_000);
    const described = await schedule(doc.id).describe();
    expect(described.spec.intervals?.map((i) => i.every)).toEqual([6 * 3600_000]);
    // Spread by an offset from the document id, and the next run falls on it.
    const offset = described.spec.intervals?.[0]?.offset ?? 0;
    expect(Date.parse(doc.refresh.nextRunAt) % (6 * 3600_000)).toBe(offset);
    expect(described.policies.overlap).toBe(ScheduleOverlapPolicy.SKIP);
    expect(described.action).toMatchObject({ type: 'startWorkflow', workflowType: 'knowledgeRefresh', workflowId: `knowledge-refresh:${doc.id}`, taskQueue, args: [{ orgId, documentId: doc.id }] });

    // Changing the interval re-ingests nothing (same revision) and updates the schedule.
    const daily = await api('PATCH', `/v1/orgs/${orgId}/knowledge/${doc.id}`, { refresh: { every: '1d' } });
    expect(daily.statusCode).toBe(200);
    expect(daily.json()).toMatchObject({ revision: 1, status: 'ready', refresh: { every: '1d' } });
    expect(await intervals(doc.id)).toEqual([24 * 3600_000]);

    const off = await api('PATCH', `/v1/orgs/${orgId}/knowledge/${doc.id}`, { refresh: null });
    expect(off.json()).toMatchObject({ revision: 1, refresh: null });
    await expect(schedule(doc.id).describe()).rejects.toBeInstanceOf(ScheduleNotFoundError);

    expect((await api('PATCH', `/v1/orgs/${orgId}/knowledge/${doc.id}`, { refresh: { every: '7d' } })).json().refresh.every).toBe('7d');
    expect(await intervals(doc.id)).toEqual([7 * 24 * 3600_000]);
    expect((await api('DELETE', `/v1/orgs/${orgId}/knowledge/${doc.id}`)).statusCode).toBe(204);
    await expect(schedule(doc.id).describe()).rejects.toBeInstanceOf(ScheduleNotFoundError);
  });

  it('refuses intervals it does not offer, refresh on text documents, and members', async () => {
    const odd = await api('POST', `/v1/orgs/${orgId}/knowledge`, { url: `${siteUrl}/x`, refresh: { every: '5m' } });
    expect(odd.statusCode).toBe(400);
    const text = await api('POST', `/v1/orgs/${orgId}/knowledge`, { title: 'Note', body: 'Plain text.', refresh: { every: '1h' } });
    expect(text.statusCode).toBe(400);
    const note = await api('POST', `/v1/orgs/${orgId}/knowledge`, { title: 'Note', body: 'Plain text.' });
    const patched = await api('PATCH', `/v1/orgs/${orgId}/knowledge/${note.json().id}`, { refresh: { every: '1h' } });
    expect(patched.statusCode).toBe(400);
    expect(patched.json().detail).toMatch(/only web pages/);
    await expect(schedule(note.json().id).describe()).rejects.toBeInstanceOf(ScheduleNotFoundError);
    const page = await addPage('/members', '<p>Members read, admins write.</p>');
    expect((await api('PATCH', `/v1/orgs/${orgId}/knowledge/${page.id}`, { refresh: null }, memberToken)).statusCode).toBe(403);
    expect(await intervals(page.id)).toEqual([3600_000]);
  });

  it('a triggered re-fetch of an unchanged page (304) keeps the chunks and embeds nothing; a changed page replaces them', async () => {
    const doc = await addPage('/prices', '<html><body><h1>Prices</h1><p>The Basic plan costs 19 EUR per month.</p></body></html>');
    const before = await chunkRows(doc.id);
    const embeddingsBefore = embeddingCalls();

    // The schedule's own action, triggered: the workflow it started answers unchanged.
    await schedule(doc.id).trigger();
    let workflowId: string | undefined;
    for (const deadline = Date.now() + 30_000; !workflowId && Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
      workflowId = (await schedule(doc.id).describe()).info.recentActions[0]?.action.workflow.workflowId;
    }
    expect(workflowId).toMatch(new RegExp(`^knowledge-refresh:${doc.id}`));
    const unchanged = await temporal.client.workflow.getHandle(workflowId!).result();
    expect(unchanged).toEqual({ outcome: 'unchanged', notModified: true });
    expect(siteRequests.filter((r) => r.path === '/prices').at(-1)?.headers['if-none-match']).toMatch(/^"[0-9a-f]{16}"$/);
    expect(await chunkRows(doc.id)).toEqual(before);
    expect(embeddingCalls()).toBe(embeddingsBefore);
    const shown = (await api('GET', `/v1/orgs/${orgId}/knowledge/${doc.id}`, undefined, memberToken)).json();
    expect(shown).toMatchObject({ revision: 1, status: 'ready', refresh: { every: '1h', lastOutcome: 'unchanged', lastError: null } });
    expect(Date.parse(shown.refresh.lastFetchedAt)).toBeGreaterThan(Date.now() - 60_000);

    pages.set('/prices', { html: '<html><body><h1>Prices</h1><p>The Basic plan now costs 25 EUR per month.</p></body></html>', etag: true });
    const changed = await refreshNow(doc.id);
    expect(changed).toMatchObject({ outcome: 'changed', revision: 2 });
    const after = await chunkRows(doc.id);
    expect(after.map((c) => c.passage).join(' ')).toContain('25 EUR');
    expect(after.map((c) => c.id).some((id) => before.some((b) => b.id === id))).toBe(false);
    expect(embeddingCalls()).toBeGreaterThan(embeddingsBefore);
    expect((await api('GET', `/v1/orgs/${orgId}/knowledge/${doc.id}`, undefined, memberToken)).json()).toMatchObject({
      revision: 2,
      status: 'ready',
      refresh: { lastOutcome: 'changed', lastError: null },
    });
    expect((await search('basic plan price'))[0]).toMatchObject({ documentId: doc.id });
  });

  it('a page whose bytes change but whose text does not (no ETag) is unchanged: same chunk ids, no embedding call', async () => {
    const html = (nonce: string) => `<html><head><script>var nonce = "${nonce}";</script></head><body><p>Delivery takes three business days.</p></body></html>`;
    const doc = await addPage('/delivery', html('a1'), { etag: false });
    const before = await chunkRows(doc.id);
    const embeddingsBefore = embeddingCalls();
    pages.set('/delivery', { html: html('b2'), etag: false });
    expect(await refreshNow(doc.id)).toEqual({ outcome: 'unchanged', notModified: false });
    expect(siteRequests.filter((r) => r.path === '/delivery').at(-1)?.headers['if-none-match']).toBeUndefined();
    expect(await chunkRows(doc.id)).toEqual(before);
    expect(embeddingCalls()).toBe(embeddingsBefore);
  });

  it('a failing re-fetch keeps the old chunks searchable and shows why', async () => {
    const doc = await addPage('/warranty', '<p>The KX-2040 router has a 24-month warranty.</p>');
    const before = await chunkRows(doc.id);
    pages.set('/warranty', { html: '', etag: true, status: 410 });
    const failed = await refreshNow(doc.id);
    expect(failed).toEqual({ outcome: 'failed', reason: 'The page answered HTTP 410.' });
    expect(await chunkRows(doc.id)).toEqual(before);
    expect((await api('GET', `/v1/orgs/${orgId}/knowledge/${doc.id}`, undefined, memberToken)).json()).toMatchObject({
      revision: 1,
      status: 'ready',
      failureReason: null,
      refresh: { lastOutcome: 'failed', lastError: 'The page answered HTTP 410.' },
    });
    expect((await search('KX2040 warranty'))[0]).toMatchObject({ documentId: doc.id });
  });

  it("another org's page answers 404 and its schedule stays", async () => {
    const doc = await addPage('/secret', '<p>Org A only.</p>');
    for (const [method, payload] of [['GET'], ['PATCH', { refresh: null }], ['PUT', { url: `${siteUrl}/secret` }], ['DELETE']] as const) {
      const res = await api(method, `/v1/orgs/${orgId}/knowledge/${doc.id}`, payload, outsiderToken);
      expect(res.statusCode, method).toBe(404);
    }
    expect(await intervals(doc.id)).toEqual([3600_000]);
  });

  it('replacing a page by text drops its schedule, and deleting the org deletes the schedules of its pages', async () => {
    const replaced = await addPage('/faq', '<p>Questions and answers.</p>');
    const put = await api('PUT', `/v1/orgs/${orgId}/knowledge/${replaced.id}`, { title: 'FAQ', body: 'Now pasted text.' });
    expect(put.json()).toMatchObject({ source: { kind: 'text' }, refresh: null });
    await expect(schedule(replaced.id).describe()).rejects.toBeInstanceOf(ScheduleNotFoundError);

    const doc = await addPage('/about', '<p>About us.</p>');
    const gone = await api('DELETE', `/v1/orgs/${orgId}`, undefined, ownerToken);
    expect(gone.statusCode).toBe(204);
    await expect(schedule(doc.id).describe()).rejects.toBeInstanceOf(ScheduleNotFoundError);
  });
});
