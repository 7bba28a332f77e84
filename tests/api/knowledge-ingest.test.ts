import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../api/app.js';
import { withPrincipal } from '../../lib/db.js';
import { searchKnowledge } from '../../activities/knowledge/search.js';
import type { FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { signUserToken } from '../support/auth.js';
import { createOrgWithMembers } from '../support/db.js';
import { makeDocx, makePdf, makeZipBombDocx } from '../support/document-fixtures.js';
import { startKnowledgeStack, TEST_EMBEDDING_MODEL, type KnowledgeStack } from '../support/knowledge.js';

/**
 * Knowledge ingestion on the real stack: the API records uploads and URLs and starts
 * knowledgeIngest workflows on Temporal; a knowledge worker extracts, chunks and embeds (fake
 * LLM's /v1/embeddings) into Postgres; a local web server stands in for customer pages.
 */
let stack: KnowledgeStack;
let pool: pg.Pool;
let admin: pg.Pool;
let llm: FakeLlmServer;
let app: App;
let pagesUrl: string;
let orgId: string;
let otherOrgId: string;
let adminToken: string;
let memberToken: string;
let outsiderToken: string;

beforeAll(async () => {
  stack = await startKnowledgeStack({
    queuePrefix: 'knowledge',
    site: (req, res) => {
      if (req.url === '/pricing') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end('<!doctype html><html><head><title>Цены</title><script>track()</script></head><body><nav>Меню</nav><h1>Тарифы</h1><p>Тариф «Старт» стоит 990 рублей в месяц.</p></body></html>');
      } else if (req.url === '/big') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('x'.repeat(300_000));
      } else {
        res.writeHead(404).end('not here');
      }
    },
    app: { knowledgeMaxUploadBytes: 1024 * 1024 },
    worker: { maxUrlBytes: 200_000, limits: { timeoutMs: 30_000, heapMb: 128, maxUnzippedBytes: 20 * 1024 * 1024 } },
  });
  ({ pool, admin, llm, app, siteUrl: pagesUrl } = stack);
  const org = await createOrgWithMembers(admin, ['owner', 'admin', 'member']);
  orgId = org.orgId;
  otherOrgId = (await createOrgWithMembers(admin, ['owner'])).orgId;
  adminToken = await signUserToken(org.userWithRole('admin'));
  memberToken = await signUserToken(org.userWithRole('member'));
  const outsider = await createOrgWithMembers(admin, ['owner']);
  outsiderToken = await signUserToken(outsider.userWithRole('owner'));
});

afterAll(() => stack?.close());

function multipart(fields: Record<string, string>, file?: { name: string; bytes: Buffer; type?: string }) {
  const boundary = `----knowledge${Math.random().toString(16).slice(2)}`;
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(fields)) {
    parts.push(Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`));
  }
  if (file) {
    parts.push(Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="${file.name}"\r\ncontent-type: ${file.type ?? 'application/octet-stream'}\r\n\r\n`));
    parts.push(file.bytes, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { payload: Buffer.concat(parts), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

async function upload(file: { name: string; bytes: Buffer; type?: string }, fields: Record<string, string> = {}, opts: { token?: string; method?: 'POST' | 'PUT'; documentId?: string; org?: string } = {}) {
  const form = multipart(fields, file);
  const url = opts.documentId ? `/v1/orgs/${opts.org ?? orgId}/knowledge/${opts.documentId}` : `/v1/orgs/${opts.org ?? orgId}/knowledge`;
  return app.inject({ method: opts.method ?? 'POST', url, headers: { ...form.headers, authorization: `Bearer ${opts.token ?? adminToken}` }, payload: form.payload });
}

async function getDoc(id: string, token = memberToken) {
  return app.inject({ method: 'GET', url: `/v1/orgs/${orgId}/knowledge/${id}`, headers: { authorization: `Bearer ${token}` } });
}

/** Polls the API until the document's ingestion settles on this revision. */
async function settled(id: string, revision = 1) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const doc = (await getDoc(id)).json();
    if (doc.revision === revision && (doc.status === 'ready' || doc.status === 'failed')) return doc;
    if (Date.now() > deadline) throw new Error(`document ${id} still ${doc.status} (revision ${doc.revision})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const search = (query: string, org = orgId) => withPrincipal(pool, { kind: 'worker', orgId: org }, (tx) => searchKnowledge(tx, { orgId: org, query, limit: 5 }));

describe('knowledge ingestion', () => {
  it('ingests an uploaded PDF: text per page, chunks with language and embeddings, searchable, progress shown', async () => {
    const pdf = makePdf([
      ['Price list 2026', 'The Pro plan costs 49 EUR per seat and month.', 'Annual billing saves 15 percent.'],
      ['Support', 'Support answers within four business hours.'],
    ]);
    const res = await upload({ name: 'prices.pdf', bytes: pdf, type: 'application/pdf' });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ title: 'prices', status: 'pending', revision: 1, source: { kind: 'file', fileName: 'prices.pdf', mediaType: 'application/pdf', byteSize: pdf.length } });
    const doc = await settled(res.json().id);
    expect(doc).toMatchObject({ status: 'ready', failureReason: null, pageCount: 2, language: 'en', progress: { chunksDone: doc.progress.chunksTotal } });
    expect(doc.progress.chunksTotal).toBeGreaterThan(0);
    expect(doc.body).toContain('The Pro plan costs 49 EUR per seat and month.');
    const chunks = await admin.query(`select language, embedding_model, cardinality(embedding) as dims from public.knowledge_chunks where document_id = $1`, [doc.id]);
    expect(chunks.rows.every((c) => c.language === 'en' && c.embedding_model === TEST_EMBEDDING_MODEL && c.dims === 64)).toBe(true);
    expect(llm.requests.some((r) => r.path === '/v1/embeddings')).toBe(true);
    const [hit] = await search('how much does pro cost per seat');
    expect(hit).toMatchObject({ documentId: doc.id, title: 'prices' });
  });

  it('ingests a DOCX, judged by its bytes even when named .txt', async () => {
    const docx = await makeDocx(['Тариф «Бизнес»', 'Стоимость тарифа — 4 900 рублей в месяц за менеджера.']);
    const res = await upload({ name: 'tarif.txt', bytes: docx, type: 'text/plain' }, { title: 'Тариф' });
    expect(res.statusCode).toBe(201);
    expect(res.json().source.mediaType).toBe('application/vnd.openxmlformats-officedocument.wordprocessingml.document');
    const doc = await settled(res.json().id);
    expect(doc).toMatchObject({ status: 'ready', language: 'ru' });
    expect((await search('тарифы'))[0]?.documentId).toBe(doc.id);
  });

  it('ingests HTML and Markdown uploads and plain JSON text', async () => {
    const html = await upload({ name: 'page.html', bytes: Buffer.from('<html><body><h1>Delivery</h1><p>Courier delivery within two business days.</p><script>evil()</script></body></html>') });
    const md = await upload({ name: 'faq.md', bytes: Buffer.from('# Warranty\n\nThe **KX-2040** router has a 24-month warranty.\n') });
    const text = await app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/knowledge`, headers: { authorization: `Bearer ${adminToken}` }, payload: { title: 'Returns', body: 'Unused licences can be returned within 30 days.' } });
    expect([html.statusCode, md.statusCode, text.statusCode]).toEqual([201, 201, 201]);
    expect(html.json().source.mediaType).toBe('text/html');
    expect(md.json().source.mediaType).toBe('text/markdown');
    const [h, m, t] = await Promise.all([settled(html.json().id), settled(md.json().id), settled(text.json().id)]);
    expect([h.status, m.status, t.status]).toEqual(['ready', 'ready', 'ready']);
    expect(h.body).toContain('Courier delivery');
    expect(h.body).not.toContain('evil');
    expect((await search('kx2040 warranty'))[0]?.documentId).toBe(m.id);
    expect((await search('returning licenses'))[0]?.documentId).toBe(t.id);
  });

  it('fetches a URL through the SSRF guard and reduces its HTML to text', async () => {
    const res = await app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/knowledge`, headers: { authorization: `Bearer ${adminToken}` }, payload: { url: `${pagesUrl}/pricing` } });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ title: `${pagesUrl}/pricing`, source: { kind: 'url', url: `${pagesUrl}/pricing` } });
    const doc = await settled(res.json().id);
    expect(doc).toMatchObject({ status: 'ready', language: 'ru' });
    expect(doc.body).toContain('Тариф «Старт» стоит 990 рублей');
    expect(doc.body).not.toContain('track()');
    expect(doc.body).not.toContain('Меню');
  });

  it('fails URLs that are internal, missing or too large, with the reason in the API', async () => {
    const post = (url: string) => app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/knowledge`, headers: { authorization: `Bearer ${adminToken}` }, payload: { url } });
    const internal = await settled((await post('http://169.254.169.254/latest/meta-data/')).json().id);
    expect(internal).toMatchObject({ status: 'failed' });
    expect(internal.failureReason).toMatch(/not allowed/);
    const missing = await settled((await post(`${pagesUrl}/nothing`)).json().id);
    expect(missing.failureReason).toMatch(/HTTP 404/);
    const big = await settled((await post(`${pagesUrl}/big`)).json().id);
    expect(big.failureReason).toMatch(/larger than 200000 bytes/);
    expect((await post('ftp://example.com/file')).statusCode).toBe(400);
  });

  it('fails a corrupt, an encrypted and a zip-bomb file cleanly, and the worker goes on', async () => {
    const corrupt = await upload({ name: 'broken.pdf', bytes: Buffer.from('%PDF-1.7\n1 0 obj garbage that is no pdf') });
    const encrypted = await upload({ name: 'locked.pdf', bytes: makePdf([['secret prices']], { encrypted: true }) });
    const bomb = await upload({ name: 'bomb.docx', bytes: await makeZipBombDocx(30) });
    expect([corrupt.statusCode, encrypted.statusCode, bomb.statusCode]).toEqual([201, 201, 201]);
    const [c, e, b] = await Promise.all([settled(corrupt.json().id), settled(encrypted.json().id), settled(bomb.json().id)]);
    expect(c).toMatchObject({ status: 'failed' });
    expect(c.failureReason).toMatch(/could not be read/);
    expect(e.failureReason).toMatch(/encrypted/);
    expect(b.failureReason).toMatch(/expands/);
    // Nothing of them is searchable, and a good upload right after still works.
    const chunks = await admin.query(`select count(*)::int as n from public.knowledge_chunks where document_id = any ($1::uuid[])`, [[c.id, e.id, b.id]]);
    expect(chunks.rows[0].n).toBe(0);
    const ok = await upload({ name: 'ok.txt', bytes: Buffer.from('Still working after bad files.') });
    expect((await settled(ok.json().id)).status).toBe('ready');
  });

  it('refuses binary files that are no supported document, oversized uploads and members', async () => {
    const exe = await upload({ name: 'prices.pdf', bytes: Buffer.from([0x4d, 0x5a, 0x90, 0x00, 0x03, 0x00, 0x00, 0x00]) });
    expect(exe.statusCode).toBe(415);
    expect(exe.headers['content-type']).toContain('application/problem+json');
    const zip = await upload({ name: 'notes.docx', bytes: await (async () => { const JSZip = (await import('jszip')).default; const z = new JSZip(); z.file('a.txt', 'a'); return z.generateAsync({ type: 'nodebuffer' }); })() });
    expect(zip.statusCode).toBe(415);
    const member = await upload({ name: 'a.txt', bytes: Buffer.from('hello') }, {}, { token: memberToken });
    expect(member.statusCode).toBe(403);
    const outsider = await upload({ name: 'a.txt', bytes: Buffer.from('hello') }, {}, { token: outsiderToken });
    expect(outsider.statusCode).toBe(404);
    const empty = await upload({ name: 'a.txt', bytes: Buffer.alloc(0) });
    expect(empty.statusCode).toBe(400);
    const huge = await upload({ name: 'huge.txt', bytes: Buffer.alloc(1024 * 1024 + 1, 'a') });
    expect(huge.statusCode).toBe(413);
    expect(huge.json().type).toMatch(/payload-too-large$/);
    const count = await admin.query(`select count(*)::int as n from public.knowledge_documents where org_id = $1 and file_name in ('huge.txt', 'a.txt')`, [orgId]);
    expect(count.rows[0].n).toBe(0);
  });

  it('re-uploading replaces the chunks at once; the old ones stay searchable until then', async () => {
    const first = await upload({ name: 'plan.txt', bytes: Buffer.from('The Starter plan costs 10 EUR.') }, { title: 'Plans' });
    const doc = await settled(first.json().id);
    expect((await search('starter plan'))[0]?.documentId).toBe(doc.id);
    const second = await upload({ name: 'plan.txt', bytes: Buffer.from('The Growth plan costs 20 EUR.') }, { title: 'Plans' }, { method: 'PUT', documentId: doc.id });
    expect(second.statusCode).toBe(200);
    expect(second.json()).toMatchObject({ revision: 2, status: 'pending' });
    const replaced = await settled(doc.id, 2);
    expect(replaced.status).toBe('ready');
    const passages = await admin.query(`select passage from public.knowledge_chunks where document_id = $1`, [doc.id]);
    expect(passages.rows.map((r) => r.passage)).toEqual(['The Growth plan costs 20 EUR.']);
    expect((await search('starter')).map((h) => h.documentId)).not.toContain(doc.id);
    // A failed re-upload keeps the last good chunks searchable and says why it failed.
    const broken = await upload({ name: 'plan.pdf', bytes: Buffer.from('%PDF-1.4 broken') }, {}, { method: 'PUT', documentId: doc.id });
    expect(broken.statusCode).toBe(200);
    const failed = await settled(doc.id, 3);
    expect(failed.status).toBe('failed');
    expect((await search('growth plan'))[0]?.documentId).toBe(doc.id);
  });

  it("another org's document answers 404 and its chunks never appear", async () => {
    const mine = await upload({ name: 'secret.txt', bytes: Buffer.from('Org A discount code ZEBRA-77.') });
    const doc = await settled(mine.json().id);
    expect((await app.inject({ method: 'GET', url: `/v1/orgs/${orgId}/knowledge/${doc.id}`, headers: { authorization: `Bearer ${outsiderToken}` } })).statusCode).toBe(404);
    expect(await search('ZEBRA-77', otherOrgId)).toEqual([]);
    const put = await upload({ name: 'x.txt', bytes: Buffer.from('x') }, {}, { method: 'PUT', documentId: doc.id, token: outsiderToken });
    expect(put.statusCode).toBe(404);
  });
});
