/**
 * Chunks for documents that have none: those created before chunk search existed (the migration
 * 20261206150000 left them `pending`, revision 1, without chunks) and any whose ingestion never
 * started. Each gets the ordinary knowledgeIngest workflow of its current revision, so the
 * chunks, languages, embeddings and the `ready`/`failed` status are exactly what an upload gets.
 *
 * Idempotent: the workflow id is `knowledge-ingest:<documentId>:<revision>`, so a second run
 * while ingestions are under way starts nothing new (Temporal refuses the duplicate id), and a
 * run after they finished finds no document without chunks. Safe beside live traffic: a
 * re-upload bumps the revision and the older ingestion writes nothing (activities/knowledge/store.ts).
 * Operator tooling: reads every org's documents, so it needs the schema owner's connection.
 */
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type pg from 'pg';
import { withServiceRole } from '../../lib/db.js';
import { KNOWLEDGE_TASK_QUEUE, knowledgeIngestWorkflowId } from '../../workflows/knowledge-ids.js';
import type { knowledgeIngest } from '../../workflows/knowledge-ingest.js';

export interface BackfillOptions {
  pool: pg.Pool;
  temporal: Client;
  taskQueue?: string;
  /** Only these orgs (all when absent). */
  orgIds?: string[];
  /** Documents read per page. */
  pageSize?: number;
  log?: (msg: string) => void;
}

export interface BackfillResult {
  /** Ingestions started by this run. */
  started: number;
  /** Documents whose ingestion of the current revision was already running. */
  alreadyRunning: number;
}

export async function backfillKnowledgeChunks(opts: BackfillOptions): Promise<BackfillResult> {
  const result: BackfillResult = { started: 0, alreadyRunning: 0 };
  const pageSize = opts.pageSize ?? 500;
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    // A page at a time by id, so a large deployment is never read into memory at once.
    const page = await withServiceRole(opts.pool, async (tx) => {
      const { rows } = await tx.query<{ id: string; org_id: string; revision: number }>(
        `select d.id, d.org_id, d.revision
           from public.knowledge_documents d
          where d.id > $1
            and d.status in ('pending', 'processing')
            and ($3::uuid[] is null or d.org_id = any ($3::uuid[]))
            and not exists (select 1 from public.knowledge_chunks c where c.document_id = d.id)
          order by d.id
          limit $2`,
        [after, pageSize, opts.orgIds ?? null],
      );
      return rows;
    });
    for (const doc of page) {
      try {
        await opts.temporal.workflow.start<typeof knowledgeIngest>('knowledgeIngest', {
          taskQueue: opts.taskQueue ?? KNOWLEDGE_TASK_QUEUE,
          workflowId: knowledgeIngestWorkflowId(doc.id, doc.revision),
          args: [{ orgId: doc.org_id, documentId: doc.id, revision: doc.revision }],
        });
        result.started++;
      } catch (err) {
        if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
        result.alreadyRunning++;
      }
    }
    opts.log?.(`backfill: ${result.started} ingestions started, ${result.alreadyRunning} already running`);
    if (page.length < pageSize) return result;
    after = page.at(-1)!.id;
  }
}
