import type { Worker } from '@temporalio/worker';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backfillKnowledgeChunks } from '../../scripts/knowledge/backfill.js';
import { createKnowledgeWorker } from '../../workers/knowledge-worker.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';
import { seedKnowledge } from '../support/knowledge.js';
import { connectTestTemporal, requireEnv, testDataConverter, uniqueTaskQueue, type TestTemporal } from '../support/temporal.js';

/**
 * The backfill of documents without chunks (scripts/knowledge/backfill.ts) on the real stack: the
 * ordinary knowledgeIngest workflow chunks them, a second run starts nothing, and documents that
 * have chunks are left alone.
 */
let temporal: TestTemporal;
let pool: pg.Pool;
let admin: pg.Pool;
let worker: Worker;
let workerRunning: Promise<void>;
let closeWorker: () => Promise<void>;
const taskQueue = uniqueTaskQueue('knowledge-backfill');

beforeAll(async () => {
  temporal = await connectTestTemporal();
  pool = appPool({ max: 4 });
  admin = adminPool();
  const started = await createKnowledgeWorker({
    connection: temporal.nativeConnection,
    namespace: temporal.namespace,
    pool,
    taskQueue,
    workflowBundle: { codePath: requireEnv('TEST_WORKFLOW_BUNDLE') },
    dataConverter: testDataConverter,
    shutdownGraceTime: '2 seconds',
  });
  worker = started.worker;
  closeWorker = started.close;
  workerRunning = worker.run();
});

afterAll(async () => {
  worker?.shutdown();
  await workerRunning;
  await closeWorker?.();
  await temporal?.close();
  await pool?.end();
  await admin?.end();
});

async function waitForStatuses(ids: string[]): Promise<Array<{ id: string; status: string; chunks: number }>> {
  for (let i = 0; i < 300; i++) {
    const { rows } = await admin.query(
      `select d.id, d.status, (select count(*)::int from public.knowledge_chunks c where c.document_id = d.id) as chunks
         from public.knowledge_documents d where d.id = any ($1::uuid[]) order by d.title`,
      [ids],
    );
    if (rows.every((r) => r.status === 'ready' || r.status === 'failed')) return rows;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('ingestions did not finish');
}

describe('knowledge backfill', () => {
  it('chunks every document that has none, once, and leaves the others alone', async () => {
    const a = (await createOrgWithMembers(admin, ['owner'])).orgId;
    const b = (await createOrgWithMembers(admin, ['owner'])).orgId;
    // Documents as the pre-chunk schema left them: pending, revision 1, no chunks.
    const legacy = async (orgId: string, title: string, body: string) =>
      (await admin.query<{ id: string }>(`insert into public.knowledge_documents (org_id, title, body) values ($1, $2, $3) returning id`, [orgId, title, body])).rows[0]!.id;
    const tariffs = await legacy(a, '1 Тарифы', 'Тариф «Старт» стоит 990 рублей в месяц за пользователя.');
    const shipping = await legacy(b, '2 Shipping', 'We ship to the European Union within two business days.');
    const empty = await legacy(b, '3 Empty', '   ');
    // A document that already has its chunks keeps them (same chunk ids afterwards).
    const ready = await seedKnowledge({ admin, app: pool }, a, '4 Ready', 'Warranty is 24 months on every router.');
    const readyChunks = (await admin.query(`select id from public.knowledge_chunks where document_id = $1 order by id`, [ready])).rows;

    const first = await backfillKnowledgeChunks({ pool: admin, temporal: temporal.client, taskQueue, orgIds: [a, b], pageSize: 2 });
    expect(first).toEqual({ started: 3, alreadyRunning: 0 });
    const rows = await waitForStatuses([tariffs, shipping, empty, ready]);
    expect(rows).toEqual([
      { id: tariffs, status: 'ready', chunks: 1 },
      { id: shipping, status: 'ready', chunks: 1 },
      { id: empty, status: 'failed', chunks: 0 },
      { id: ready, status: 'ready', chunks: 1 },
    ]);
    expect((await admin.query(`select id from public.knowledge_chunks where document_id = $1 order by id`, [ready])).rows).toEqual(readyChunks);
    const language = await admin.query(`select language from public.knowledge_chunks where document_id = $1`, [tariffs]);
    expect(language.rows).toEqual([{ language: 'ru' }]);

    // Run again: nothing is left to do (the failed one keeps its reason until someone re-uploads it).
    const second = await backfillKnowledgeChunks({ pool: admin, temporal: temporal.client, taskQueue, orgIds: [a, b] });
    expect(second).toEqual({ started: 0, alreadyRunning: 0 });
  });

  it('does not start a second ingestion of a revision whose ingestion is under way', async () => {
    const org = (await createOrgWithMembers(admin, ['owner'])).orgId;
    const id = (await admin.query<{ id: string }>(`insert into public.knowledge_documents (org_id, title, body) values ($1, 'Pending', 'Some text about prices.') returning id`, [org])).rows[0]!.id;
    // Another task queue that no worker polls: the first start stays running.
    const idle = uniqueTaskQueue('knowledge-idle');
    expect(await backfillKnowledgeChunks({ pool: admin, temporal: temporal.client, taskQueue: idle, orgIds: [org] })).toEqual({ started: 1, alreadyRunning: 0 });
    expect(await backfillKnowledgeChunks({ pool: admin, temporal: temporal.client, taskQueue: idle, orgIds: [org] })).toEqual({ started: 0, alreadyRunning: 1 });
    await temporal.client.workflow.getHandle(`knowledge-ingest:${id}:1`).terminate('test done');
  });
});
