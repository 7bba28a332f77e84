import { createServer, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { buildApp, type App } from '../../api/app.js';
import { prepareDocument, replaceDocumentChunks, type ChunkEmbeddings } from '../../activities/knowledge/store.js';
import { EmbeddingsClient } from '../../integrations/llm/embeddings.js';
import { withPrincipal } from '../../lib/db.js';
import { startFakeLlm, type FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { createKnowledgeWorker, type KnowledgeWorkerDeps } from '../../workers/knowledge-worker.js';
import { TEST_JWT_SECRET } from './auth.js';
import { adminPool, appPool } from './db.js';
import { connectTestTemporal, requireEnv, testDataConverter, testLogger, uniqueTaskQueue, type TestTemporal } from './temporal.js';

/**
 * A ready knowledge document with its chunks, for tests about search rather than ingestion: the
 * row as an operator (`admin`, superuser), the chunks the way the ingestion activity writes them
 * (`app` as the org's worker, so RLS applies).
 */
export async function seedKnowledge(
  pools: { admin: pg.Pool; app: pg.Pool },
  orgId: string,
  title: string,
  body: string,
  embed?: (passages: string[]) => ChunkEmbeddings,
): Promise<string> {
  const prepared = prepareDocument(body);
  const { rows } = await pools.admin.query<{ id: string }>(
    `insert into public.knowledge_documents (org_id, title, body, status, language, chunks_total, chunks_done, ingested_at)
     values ($1, $2, $3, 'ready', $4, $5, $5, now()) returning id`,
    [orgId, title, body, prepared.language, prepared.chunks.length],
  );
  const documentId = rows[0]!.id;
  await withPrincipal(pools.app, { kind: 'worker', orgId }, (tx) =>
    replaceDocumentChunks(tx, { orgId, documentId, revision: 1, title }, prepared, embed?.(prepared.chunks.map((c) => c.passage))),
  );
  return documentId;
}

/** What `startKnowledgeStack` started, for the tests to drive and `close` to stop. */
export interface KnowledgeStack {
  temporal: TestTemporal;
  /** The API's and the worker's pool (role `app`, RLS applies). */
  pool: pg.Pool;
  /** Superuser pool for fixtures and assertions on rows. */
  admin: pg.Pool;
  llm: FakeLlmServer;
  app: App;
  taskQueue: string;
  /** Base URL of the local site standing in for customer pages. */
  siteUrl: string;
  close(): Promise<void>;
}

export const TEST_EMBEDDING_MODEL = 'test/embed-small';

/**
 * The knowledge API on the real stack: Temporal, Postgres, the fake LLM's /v1/embeddings, a
 * local site serving `site` (the only host the worker's SSRF guard lets through), the API
 * starting knowledge workflows on a fresh task queue and a knowledge worker running them.
 * `app` and `worker` take the options a suite needs beyond that (upload limits, URL caps).
 */
export async function startKnowledgeStack(opts: {
  queuePrefix: string;
  site: RequestListener;
  app?: Partial<Parameters<typeof buildApp>[0]>;
  worker?: Partial<KnowledgeWorkerDeps>;
}): Promise<KnowledgeStack> {
  // Undone in reverse on close, or at once when a later step of the setup throws.
  const undo: Array<() => Promise<unknown>> = [];
  const close = async () => {
    for (const step of undo.splice(0).reverse()) await step();
  };
  try {
    const temporal = await connectTestTemporal();
    undo.push(() => temporal.close());
    const pool = appPool({ max: 6 });
    const admin = adminPool();
    undo.push(() => pool.end(), () => admin.end());
    const llm = await startFakeLlm();
    undo.push(() => llm.close());
    const site = createServer(opts.site);
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    undo.push(() => new Promise((resolve) => site.close(resolve)));
    const siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
    const taskQueue = uniqueTaskQueue(opts.queuePrefix);
    const app = await buildApp({ pool, temporal: temporal.client, logger: testLogger, auth: { jwtSecret: TEST_JWT_SECRET }, knowledgeTaskQueue: taskQueue, ...opts.app });
    undo.push(() => app.close());
    await app.ready();
    const embedder = new EmbeddingsClient({ baseUrl: llm.url, apiKey: 'test-llm-key', model: TEST_EMBEDDING_MODEL, timeoutMs: 10_000 });
    const started = await createKnowledgeWorker({
      connection: temporal.nativeConnection,
      namespace: temporal.namespace,
      pool,
      taskQueue,
      workflowBundle: { codePath: requireEnv('TEST_WORKFLOW_BUNDLE') },
      dataConverter: testDataConverter,
      shutdownGraceTime: '2 seconds',
      ssrfAllowedHosts: [new URL(siteUrl).host],
      embedderFor: async () => embedder,
      ...opts.worker,
    });
    undo.push(() => started.close());
    const workerRunning = started.worker.run();
    undo.push(() => {
      started.worker.shutdown();
      return workerRunning;
    });
    return { temporal, pool, admin, llm, app, taskQueue, siteUrl, close };
  } catch (error) {
    await close();
    throw error;
  }
}
