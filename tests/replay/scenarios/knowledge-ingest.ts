import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createKnowledgeWorker } from '../../../workers/knowledge-worker.js';
import { EmbeddingsClient } from '../../../integrations/llm/embeddings.js';
import { createOrgWithMembers } from '../../support/db.js';
import { testDataConverter } from '../../support/temporal.js';
import type { ReplayScenario, ScenarioContext, ScenarioModule } from '../scenario.js';
import { makePdf } from '../../support/document-fixtures.js';

let closeFetch: (() => Promise<void>) | undefined;
/** A customer's site for re-fetched pages: /prices answers, anything else is gone (410). */
let site: Server | undefined;
let siteUrl = '';

export async function startWorkers(ctx: ScenarioContext) {
  site = createServer((req, res) => {
    if (req.url === '/prices') res.writeHead(200, { 'content-type': 'text/html', etag: '"v2"' }).end('<html><body><p>The Pro plan now costs 59 EUR per seat.</p></body></html>');
    else res.writeHead(410).end();
  });
  await new Promise<void>((resolve) => site!.listen(0, '127.0.0.1', resolve));
  siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
  const embedder = new EmbeddingsClient({ baseUrl: ctx.llm.url, apiKey: 'test-llm-key', model: 'test/embed-small', timeoutMs: 10_000 });
  const started = await createKnowledgeWorker({
    connection: ctx.temporal.nativeConnection,
    namespace: ctx.temporal.namespace,
    pool: ctx.pool,
    taskQueue: ctx.taskQueue,
    workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
    dataConverter: testDataConverter,
    shutdownGraceTime: '2 seconds',
    embedderFor: async () => embedder,
    ssrfAllowedHosts: [new URL(siteUrl).host],
  });
  closeFetch = started.close;
  return [started.worker];
}

export async function close() {
  await closeFetch?.();
  await new Promise((resolve) => (site ? site.close(resolve) : resolve(undefined)));
}

/** A document row (and file) as the API writes it, then the workflow the API would start. */
async function ingest(ctx: ScenarioContext, file: Buffer) {
  const { orgId } = await createOrgWithMembers(ctx.admin, ['owner']);
  const { rows } = await ctx.admin.query<{ id: string }>(
    `insert into public.knowledge_documents (org_id, title, body, source_kind, media_type, byte_size) values ($1, 'Prices', '', 'file', 'application/pdf', $2) returning id`,
    [orgId, file.length],
  );
  const documentId = rows[0]!.id;
  await ctx.admin.query(`insert into public.knowledge_document_files (document_id, org_id, revision, content, sha256) values ($1, $2, 1, $3, repeat('0', 64))`, [documentId, orgId, file]);
  const workflowId = `knowledge-ingest:${documentId}:1`;
  const handle = await ctx.temporal.client.workflow.start('knowledgeIngest', { taskQueue: ctx.taskQueue, workflowId, args: [{ orgId, documentId, revision: 1 }] });
  await handle.result();
  return workflowId;
}

/** A ready web page (as an ingestion leaves it) whose schedule fires: the knowledgeRefresh workflow. */
async function refresh(ctx: ScenarioContext, path: string) {
  const { orgId } = await createOrgWithMembers(ctx.admin, ['owner']);
  const { rows } = await ctx.admin.query<{ id: string }>(
    `insert into public.knowledge_documents (org_id, title, body, source_kind, source_url, status, refresh_every, content_sha256, source_etag)
     values ($1, 'Prices', 'The Pro plan costs 49 EUR per seat.', 'url', $2, 'ready', '1h', repeat('0', 64), '"v1"') returning id`,
    [orgId, `${siteUrl}${path}`],
  );
  const documentId = rows[0]!.id;
  const workflowId = `knowledge-refresh:${documentId}-2026-12-09T20:00:00Z`;
  const handle = await ctx.temporal.client.workflow.start('knowledgeRefresh', { taskQueue: ctx.taskQueue, workflowId, args: [{ orgId, documentId }] });
  await handle.result();
  return workflowId;
}

export const scenarios: ReplayScenario[] = [
  {
    workflowType: 'knowledgeRefresh',
    path: 'changed-reindexed',
    description: 'a scheduled re-fetch finds the page changed and indexes it as a new revision',
    run: (ctx) => refresh(ctx, '/prices'),
  },
  {
    workflowType: 'knowledgeRefresh',
    path: 'gone-recorded',
    description: 'a scheduled re-fetch meets HTTP 410 (non-retryable): the failure is recorded, the chunks stay',
    run: (ctx) => refresh(ctx, '/gone'),
  },
  {
    workflowType: 'knowledgeIngest',
    path: 'pdf-ready',
    description: 'an uploaded PDF is extracted, chunked, embedded and marked ready',
    run: (ctx) => ingest(ctx, makePdf([['The Pro plan costs 49 EUR per seat.'], ['Support answers within four hours.']])),
  },
  {
    workflowType: 'knowledgeIngest',
    path: 'corrupt-failed',
    description: 'a corrupt PDF fails extraction (non-retryable) and the document is marked failed',
    run: (ctx) => ingest(ctx, Buffer.from('%PDF-1.4 not really a pdf')),
  },
];

void ({ scenarios, startWorkers, close } satisfies ScenarioModule);
