import { createHash } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type pg from 'pg';
import { withPrincipal, type Tx } from '../../lib/db.js';
import type { Principal } from '../../lib/principal.js';
import type { KnowledgeMediaType } from '../../integrations/documents/media-type.js';
import { KNOWLEDGE_TASK_QUEUE, knowledgeIngestWorkflowId } from '../../workflows/knowledge-ids.js';
import type { knowledgeIngest } from '../../workflows/knowledge-ingest.js';
import { OrgIdSearchAttribute } from '../../workflows/search-attributes.js';
import { decodeCursor, toPage } from '../pagination.js';
import { notFound, ProblemError } from '../problems.js';
import { DEFAULT_RESOURCE_CAPS, requireBelowCap, type ResourceCaps } from './caps.js';
import { requireOrgRole } from './org-access.js';

export type KnowledgeStatus = 'pending' | 'processing' | 'ready' | 'failed';
export type KnowledgeSourceKind = 'text' | 'file' | 'url';

export interface KnowledgeDocument {
  id: string;
  orgId: string;
  title: string;
  body: string;
  status: KnowledgeStatus;
  failureReason: string | null;
  source: { kind: KnowledgeSourceKind; url: string | null; fileName: string | null; mediaType: string | null; byteSize: number | null };
  revision: number;
  progress: { chunksTotal: number | null; chunksDone: number };
  pageCount: number | null;
  language: string | null;
  ingestedAt: string | null;
  createdAt: string;
  updatedAt: string;
}

/** What a document's content is: pasted text, an uploaded file (bytes checked by the route), or a web page. */
export type KnowledgeContent =
  | { kind: 'text'; body: string }
  | { kind: 'file'; bytes: Buffer; mediaType: KnowledgeMediaType; fileName: string | null }
  | { kind: 'url'; url: string };

interface Row {
  id: string;
  org_id: string;
  title: string;
  body: string;
  status: KnowledgeStatus;
  failure_reason: string | null;
  source_kind: KnowledgeSourceKind;
  source_url: string | null;
  file_name: string | null;
  media_type: string | null;
  byte_size: string | null;
  revision: number;
  chunks_total: number | null;
  chunks_done: number;
  page_count: number | null;
  language: string | null;
  ingested_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

const columns = `id, org_id, title, body, status, failure_reason, source_kind, source_url, file_name, media_type, byte_size, revision,
  chunks_total, chunks_done, page_count, language, ingested_at, created_at, updated_at`;

const toView = (r: Row): KnowledgeDocument => ({
  id: r.id,
  orgId: r.org_id,
  title: r.title,
  body: r.body,
  status: r.status,
  failureReason: r.failure_reason,
  source: { kind: r.source_kind, url: r.source_url, fileName: r.file_name, mediaType: r.media_type, byteSize: r.byte_size === null ? null : Number(r.byte_size) },
  revision: r.revision,
  progress: { chunksTotal: r.chunks_total, chunksDone: r.chunks_done },
  pageCount: r.page_count,
  language: r.language,
  ingestedAt: r.ingested_at?.toISOString() ?? null,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
});

/** Source columns of a document for `content` (files: the bytes go to knowledge_document_files). */
function sourceColumns(content: KnowledgeContent) {
  switch (content.kind) {
    case 'text':
      return { body: content.body, url: null, fileName: null, mediaType: 'text/plain', byteSize: Buffer.byteLength(content.body) };
    case 'file':
      return { body: '', url: null, fileName: content.fileName, mediaType: content.mediaType, byteSize: content.bytes.length };
    case 'url':
      return { body: '', url: content.url, fileName: null, mediaType: null, byteSize: null };
  }
}

async function storeFile(tx: Tx, orgId: string, documentId: string, revision: number, content: KnowledgeContent): Promise<void> {
  if (content.kind !== 'file') {
    await tx.query(`delete from public.knowledge_document_files where document_id = $1 and org_id = $2`, [documentId, orgId]);
    return;
  }
  const sha256 = createHash('sha256').update(content.bytes).digest('hex');
  await tx.query(
    `insert into public.knowledge_document_files (document_id, org_id, revision, content, sha256) values ($1, $2, $3, $4, $5)
     on conflict (document_id) do update set revision = excluded.revision, content = excluded.content, sha256 = excluded.sha256`,
    [documentId, orgId, revision, content.bytes, sha256],
  );
}

/**
 * The org's knowledge documents. Writes record the content and hand ingestion to the
 * knowledgeIngest workflow (started after the transaction commits, so no transaction waits on
 * Temporal); the document shows its status and progress until it is `ready` or `failed`.
 * Admins write, members read.
 */
export function createKnowledgeService(deps: { pool: pg.Pool; temporal: Client; taskQueue?: string; caps?: ResourceCaps }) {
  const caps = deps.caps ?? DEFAULT_RESOURCE_CAPS;
  const { pool } = deps;

  /** Starts ingestion of this revision; a start that fails marks the document failed, with a reason to retry. */
  async function startIngestion(principal: Principal, row: Row): Promise<Row> {
    try {
      await deps.temporal.workflow.start<typeof knowledgeIngest>('knowledgeIngest', {
        taskQueue: deps.taskQueue ?? KNOWLEDGE_TASK_QUEUE,
        workflowId: knowledgeIngestWorkflowId(row.id, row.revision),
        args: [{ orgId: row.org_id, documentId: row.id, revision: row.revision }],
        typedSearchAttributes: [{ key: OrgIdSearchAttribute, value: row.org_id }],
        staticSummary: `Knowledge document ${row.id}, revision ${row.revision}`,
      });
      return row;
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) return row;
      await withPrincipal(pool, principal, (tx) =>
        tx.query(`update public.knowledge_documents set status = 'failed', failure_reason = $3 where id = $1 and org_id = $2 and revision = $4 and status in ('pending', 'processing')`, [
          row.id,
          row.org_id,
          'Ingestion could not be scheduled; upload the document again.',
          row.revision,
        ]),
      );
      throw new ProblemError('service-unavailable', 'The document was saved but its ingestion could not be scheduled; upload it again shortly.');
    }
  }

  return {
    async create(principal: Principal, orgId: string, doc: { title: string; content: KnowledgeContent }): Promise<KnowledgeDocument> {
      const row = await withPrincipal(pool, principal, async (tx) => {
        await requireOrgRole(tx, orgId, 'admin');
        await requireBelowCap(tx, caps, 'knowledgeDocumentsPerOrg', orgId);
        const s = sourceColumns(doc.content);
        const { rows } = await tx.query<Row>(
          `insert into public.knowledge_documents (org_id, title, body, created_by, source_kind, source_url, file_name, media_type, byte_size)
           values ($1, $2, $3, (select auth.uid()), $4, $5, $6, $7, $8) returning ${columns}`,
          [orgId, doc.title, s.body, doc.content.kind, s.url, s.fileName, s.mediaType, s.byteSize],
        );
        await storeFile(tx, orgId, rows[0]!.id, 1, doc.content);
        return rows[0]!;
      });
      return toView(await startIngestion(principal, row));
    },
    async get(principal: Principal, orgId: string, id: string): Promise<KnowledgeDocument> {
      return withPrincipal(pool, principal, async (tx) => {
        const { rows } = await tx.query<Row>(`select ${columns} from public.knowledge_documents where id = $1 and org_id = $2`, [id, orgId]);
        if (!rows[0]) throw notFound('Knowledge document');
        return toView(rows[0]);
      });
    },
    async list(principal: Principal, orgId: string, query: { q?: string | undefined; status?: KnowledgeStatus | undefined; limit: number; cursor?: string | undefined }) {
      const after = decodeCursor(query.cursor);
      return withPrincipal(pool, principal, async (tx) => {
        await requireOrgRole(tx, orgId, 'member');
        const { rows } = await tx.query<Row>(
          `select ${columns} from public.knowledge_documents
            where org_id = $1
              and ($2::text is null or search @@ websearch_to_tsquery('simple', $2))
              and ($3::timestamptz is null or (created_at, id) < ($3::timestamptz, $4::uuid))
              and ($6::text is null or status = $6)
            order by created_at desc, id desc limit $5`,
          [orgId, query.q ?? null, after?.createdAt ?? null, after?.id ?? null, query.limit + 1, query.status ?? null],
        );
        return toPage(rows, query.limit, toView);
      });
    },
    /** Title and/or content change: a new revision, ingested again; the old chunks stay searchable until the new ones replace them. */
    async update(principal: Principal, orgId: string, id: string, patch: { title?: string | undefined; content?: KnowledgeContent | undefined }) {
      const row = await withPrincipal(pool, principal, async (tx) => {
        await requireOrgRole(tx, orgId, 'admin');
        const s = patch.content ? sourceColumns(patch.content) : undefined;
        const { rows } = await tx.query<Row>(
          `update public.knowledge_documents
              set title = coalesce($3, title), revision = revision + 1, status = 'pending', failure_reason = null,
                  chunks_total = null, chunks_done = 0,
                  body = case when $4::boolean then $5 else body end,
                  source_kind = case when $4::boolean then $6 else source_kind end,
                  source_url = case when $4::boolean then $7 else source_url end,
                  file_name = case when $4::boolean then $8 else file_name end,
                  media_type = case when $4::boolean then $9 else media_type end,
                  byte_size = case when $4::boolean then $10 else byte_size end
            where id = $1 and org_id = $2 returning ${columns}`,
          [id, orgId, patch.title ?? null, s !== undefined, s?.body ?? null, patch.content?.kind ?? null, s?.url ?? null, s?.fileName ?? null, s?.mediaType ?? null, s?.byteSize ?? null],
        );
        if (!rows[0]) throw notFound('Knowledge document');
        if (patch.content) await storeFile(tx, orgId, id, rows[0].revision, patch.content);
        return rows[0];
      });
      return toView(await startIngestion(principal, row));
    },
    async remove(principal: Principal, orgId: string, id: string): Promise<void> {
      await withPrincipal(pool, principal, async (tx) => {
        await requireOrgRole(tx, orgId, 'admin');
        const deleted = await tx.query(`delete from public.knowledge_documents where id = $1 and org_id = $2`, [id, orgId]);
        if (deleted.rowCount !== 1) throw notFound('Knowledge document');
      });
    },
  };
}

export type KnowledgeService = ReturnType<typeof createKnowledgeService>;
