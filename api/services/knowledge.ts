import { createHash } from 'node:crypto';
import { ScheduleNotFoundError, ScheduleOverlapPolicy, WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type pg from 'pg';
import { withPrincipal, type Tx } from '../../lib/db.js';
import type { Principal } from '../../lib/principal.js';
import type { KnowledgeMediaType } from '../../integrations/documents/media-type.js';
import { KNOWLEDGE_TASK_QUEUE, knowledgeIngestWorkflowId, knowledgeRefreshScheduleId, type KnowledgeRefreshInterval } from '../../workflows/knowledge-ids.js';
import type { knowledgeIngest } from '../../workflows/knowledge-ingest.js';
import type { knowledgeRefresh } from '../../workflows/knowledge-refresh.js';
import { OrgIdSearchAttribute } from '../../workflows/search-attributes.js';
import { cursorAt, decodeCursor, toPage, type KeysetRow } from '../pagination.js';
import { notFound, ProblemError } from '../problems.js';
import { DEFAULT_RESOURCE_CAPS, requireBelowCap, type ResourceCaps } from './caps.js';
import { requireOrgRole } from './org-access.js';
import { callTemporal, DEFAULT_TEMPORAL_CALL_DEADLINE_MS, isTemporalUnanswered } from './temporal-calls.js';

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
  /** A web page's re-fetch schedule; null when it is fetched once. */
  refresh: KnowledgeRefreshView | null;
  createdAt: string;
  updatedAt: string;
}

export interface KnowledgeRefreshView {
  every: KnowledgeRefreshInterval;
  scheduleId: string;
  /** From Temporal's schedule; null when Temporal did not answer in time. */
  nextRunAt: string | null;
  lastFetchedAt: string | null;
  lastOutcome: 'changed' | 'unchanged' | 'failed' | null;
  /** Why the last re-fetch failed; the chunks of the last good fetch are still searched. */
  lastError: string | null;
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
  refresh_every: KnowledgeRefreshInterval | null;
  last_fetched_at: Date | null;
  last_fetch_outcome: 'changed' | 'unchanged' | 'failed' | null;
  last_fetch_error: string | null;
  created_at: Date;
  updated_at: Date;
}

const columns = `id, org_id, title, body, status, failure_reason, source_kind, source_url, file_name, media_type, byte_size, revision,
  chunks_total, chunks_done, page_count, language, ingested_at, refresh_every, last_fetched_at, last_fetch_outcome, last_fetch_error, created_at, updated_at`;

const toView = (r: Row, nextRunAt: Date | null = null): KnowledgeDocument => ({
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
  refresh: r.refresh_every
    ? {
        every: r.refresh_every,
        scheduleId: knowledgeRefreshScheduleId(r.id),
        nextRunAt: nextRunAt?.toISOString() ?? null,
        lastFetchedAt: r.last_fetched_at?.toISOString() ?? null,
        lastOutcome: r.last_fetch_outcome,
        lastError: r.last_fetch_error,
      }
    : null,
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

/** Temporal's interval for each offered refresh interval. */
const REFRESH_MS = { '1h': 3_600_000, '6h': 21_600_000, '1d': 86_400_000, '7d': 604_800_000 } as const satisfies Record<KnowledgeRefreshInterval, number>;

/**
 * The schedule's spec: every `every`, at an offset taken from the document id, so a
 * deployment's hourly pages are fetched spread over the hour rather than all on the hour (an
 * interval with no offset fires at multiples of it since the epoch).
 */
function refreshSpec(documentId: string, every: KnowledgeRefreshInterval) {
  const ms = REFRESH_MS[every];
  // Whole seconds: schedules fire at second resolution.
  return { intervals: [{ every: ms, offset: (parseInt(documentId.replace(/-/g, '').slice(0, 12), 16) % (ms / 1000)) * 1000 }] };
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
 * A web page may be re-fetched on a Temporal Schedule (`refresh`): the row holds the interval
 * asked for and Temporal's schedule follows it, applied after the transaction commits.
 * Admins write, members read.
 */
export function createKnowledgeService(deps: { pool: pg.Pool; temporal: Client; taskQueue?: string; caps?: ResourceCaps; temporalDeadlineMs?: number }) {
  const caps = deps.caps ?? DEFAULT_RESOURCE_CAPS;
  const { pool, temporal } = deps;
  const taskQueue = deps.taskQueue ?? KNOWLEDGE_TASK_QUEUE;
  const deadlineMs = deps.temporalDeadlineMs ?? DEFAULT_TEMPORAL_CALL_DEADLINE_MS;

  /** Starts ingestion of this revision; a start that fails marks the document failed, with a reason to retry. */
  async function startIngestion(principal: Principal, row: Row): Promise<Row> {
    try {
      await temporal.workflow.start<typeof knowledgeIngest>('knowledgeIngest', {
        taskQueue,
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

  /** Creates, updates or deletes the document's re-fetch schedule to match `every`. */
  async function applyRefresh(orgId: string, documentId: string, every: KnowledgeRefreshInterval | null): Promise<void> {
    const scheduleId = knowledgeRefreshScheduleId(documentId);
    const handle = temporal.schedule.getHandle(scheduleId);
    await callTemporal(
      temporal,
      deadlineMs,
      async () => {
        if (every === null) {
          try {
            await handle.delete();
          } catch (err) {
            if (!(err instanceof ScheduleNotFoundError)) throw err;
          }
          return;
        }
        const spec = refreshSpec(documentId, every);
        const action = {
          type: 'startWorkflow' as const,
          workflowType: 'knowledgeRefresh',
          workflowId: scheduleId,
          taskQueue,
          args: [{ orgId, documentId }] as Parameters<typeof knowledgeRefresh>,
          typedSearchAttributes: [{ key: OrgIdSearchAttribute, value: orgId }],
          staticSummary: `Re-fetch of knowledge document ${documentId}`,
        };
        try {
          await handle.update((previous) => ({ ...previous, spec, action, policies: { ...previous.policies, overlap: ScheduleOverlapPolicy.SKIP } }));
        } catch (err) {
          if (!(err instanceof ScheduleNotFoundError)) throw err;
          // SKIP: a slow re-fetch is never run twice at once; a missed run is not caught up on
          // later than a minute (the next one comes anyway).
          await temporal.schedule.create({ scheduleId, spec, action, policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 minute' } });
        }
      },
      'The refresh setting is saved but Temporal did not apply it in time; repeat the request to apply it.',
    );
  }

  /**
   * Makes Temporal's schedule follow the row, with no transaction open: applies what the row
   * says, then reads it again, until a concurrent request's change has been applied too (as
   * CRM sync schedules do). A request that fails after saving answers 503; repeating it applies
   * what the row says.
   */
  async function syncRefresh(principal: Principal, row: Row): Promise<Row> {
    for (let applied: KnowledgeRefreshInterval | null | undefined; row.refresh_every !== applied; ) {
      applied = row.refresh_every;
      await applyRefresh(row.org_id, row.id, applied);
      const current = await withPrincipal(pool, principal, async (tx) => (await tx.query<Row>(`select ${columns} from public.knowledge_documents where id = $1 and org_id = $2`, [row.id, row.org_id])).rows[0]);
      if (!current) return row;
      row = current;
    }
    return row;
  }

  /** The view, with the schedule's next run from Temporal for re-fetched pages. */
  async function withSchedules(rows: Row[]): Promise<KnowledgeDocument[]> {
    return Promise.all(
      rows.map(async (row) => {
        if (!row.refresh_every) return toView(row);
        try {
          const described = await temporal.connection.withDeadline(Date.now() + deadlineMs, () => temporal.schedule.getHandle(knowledgeRefreshScheduleId(row.id)).describe());
          return toView(row, described.info.nextActionTimes[0] ?? null);
        } catch (err) {
          // The document is still worth showing; nextRunAt null says Temporal did not tell.
          if (err instanceof ScheduleNotFoundError || isTemporalUnanswered(err)) return toView(row);
          throw err;
        }
      }),
    );
  }

  return {
    async create(principal: Principal, orgId: string, doc: { title: string; content: KnowledgeContent; refresh?: KnowledgeRefreshInterval | null | undefined }): Promise<KnowledgeDocument> {
      const refresh = doc.content.kind === 'url' ? (doc.refresh ?? null) : null;
      const row = await withPrincipal(pool, principal, async (tx) => {
        await requireOrgRole(tx, orgId, 'admin');
        await requireBelowCap(tx, caps, 'knowledgeDocumentsPerOrg', orgId);
        const s = sourceColumns(doc.content);
        const { rows } = await tx.query<Row>(
          `insert into public.knowledge_documents (org_id, title, body, created_by, source_kind, source_url, file_name, media_type, byte_size, refresh_every)
           values ($1, $2, $3, (select auth.uid()), $4, $5, $6, $7, $8, $9) returning ${columns}`,
          [orgId, doc.title, s.body, doc.content.kind, s.url, s.fileName, s.mediaType, s.byteSize, refresh],
        );
        await storeFile(tx, orgId, rows[0]!.id, 1, doc.content);
        return rows[0]!;
      });
      await startIngestion(principal, row);
      const [view] = await withSchedules([refresh ? await syncRefresh(principal, row) : row]);
      return view!;
    },
    async get(principal: Principal, orgId: string, id: string): Promise<KnowledgeDocument> {
      const row = await withPrincipal(pool, principal, async (tx) => {
        const { rows } = await tx.query<Row>(`select ${columns} from public.knowledge_documents where id = $1 and org_id = $2`, [id, orgId]);
        if (!rows[0]) throw notFound('Knowledge document');
        return rows[0];
      });
      const [view] = await withSchedules([row]);
      return view!;
    },
    async list(principal: Principal, orgId: string, query: { q?: string | undefined; status?: KnowledgeStatus | undefined; limit: number; cursor?: string | undefined }) {
      const after = decodeCursor(query.cursor);
      const page = await withPrincipal(pool, principal, async (tx) => {
        await requireOrgRole(tx, orgId, 'member');
        const { rows } = await tx.query<Row & KeysetRow>(
          `select ${columns}, ${cursorAt('created_at')} from public.knowledge_documents
            where org_id = $1
              and ($2::text is null or search @@ websearch_to_tsquery('simple', $2))
              and ($3::timestamptz is null or (created_at, id) < ($3::timestamptz, $4::uuid))
              and ($6::text is null or status = $6)
            order by created_at desc, id desc limit $5`,
          [orgId, query.q ?? null, after?.createdAt ?? null, after?.id ?? null, query.limit + 1, query.status ?? null],
        );
        return toPage(rows, query.limit, (r) => r);
      });
      return { items: await withSchedules(page.items), nextCursor: page.nextCursor };
    },
    /**
     * Title and/or content change: a new revision, ingested again; the old chunks stay
     * searchable until the new ones replace them. `refresh` (web pages only): undefined keeps
     * it, null stops re-fetching; a change of refresh alone ingests nothing. Content that is no
     * longer a web page drops the schedule.
     */
    async update(
      principal: Principal,
      orgId: string,
      id: string,
      patch: { title?: string | undefined; content?: KnowledgeContent | undefined; refresh?: KnowledgeRefreshInterval | null | undefined },
    ): Promise<KnowledgeDocument> {
      const reingest = patch.title !== undefined || patch.content !== undefined;
      const { row, wasUrl } = await withPrincipal(pool, principal, async (tx) => {
        await requireOrgRole(tx, orgId, 'admin');
        const before = (
          await tx.query<{ source_kind: KnowledgeSourceKind; refresh_every: KnowledgeRefreshInterval | null }>(
            `select source_kind, refresh_every from public.knowledge_documents where id = $1 and org_id = $2 for update`,
            [id, orgId],
          )
        ).rows[0];
        if (!before) throw notFound('Knowledge document');
        const kind = patch.content?.kind ?? before.source_kind;
        if (patch.refresh && kind !== 'url') throw new ProblemError('validation-error', 'refresh: only web pages (documents added by url) are re-fetched.');
        const refresh = kind !== 'url' ? null : patch.refresh === undefined ? before.refresh_every : patch.refresh;
        if (!reingest) {
          const { rows } = await tx.query<Row>(`update public.knowledge_documents set refresh_every = $3 where id = $1 and org_id = $2 returning ${columns}`, [id, orgId, refresh]);
          return { row: rows[0]!, wasUrl: before.source_kind === 'url' };
        }
        const s = patch.content ? sourceColumns(patch.content) : undefined;
        const { rows } = await tx.query<Row>(
          `update public.knowledge_documents
              set title = coalesce($3, title), revision = revision + 1, status = 'pending', failure_reason = null,
                  chunks_total = null, chunks_done = 0, refresh_every = $11,
                  body = case when $4::boolean then $5 else body end,
                  source_kind = case when $4::boolean then $6 else source_kind end,
                  source_url = case when $4::boolean then $7 else source_url end,
                  file_name = case when $4::boolean then $8 else file_name end,
                  media_type = case when $4::boolean then $9 else media_type end,
                  byte_size = case when $4::boolean then $10 else byte_size end
            where id = $1 and org_id = $2 returning ${columns}`,
          [id, orgId, patch.title ?? null, s !== undefined, s?.body ?? null, patch.content?.kind ?? null, s?.url ?? null, s?.fileName ?? null, s?.mediaType ?? null, s?.byteSize ?? null, refresh],
        );
        if (patch.content) await storeFile(tx, orgId, id, rows[0]!.revision, patch.content);
        return { row: rows[0]!, wasUrl: before.source_kind === 'url' };
      });
      if (reingest) await startIngestion(principal, row);
      // Only web pages ever have a schedule; text and files never wait on Temporal here.
      const [view] = await withSchedules([wasUrl || row.source_kind === 'url' ? await syncRefresh(principal, row) : row]);
      return view!;
    },
    /**
     * A web page's schedule is deleted first, then the row, each on its own: a Temporal that
     * does not answer leaves the document in place (503, retry) rather than a schedule that
     * fires for a document that is gone.
     */
    async remove(principal: Principal, orgId: string, id: string): Promise<void> {
      const kind = await withPrincipal(pool, principal, async (tx) => {
        await requireOrgRole(tx, orgId, 'admin');
        const { rows } = await tx.query<{ source_kind: KnowledgeSourceKind }>(`select source_kind from public.knowledge_documents where id = $1 and org_id = $2`, [id, orgId]);
        if (!rows[0]) throw notFound('Knowledge document');
        return rows[0].source_kind;
      });
      if (kind === 'url') await applyRefresh(orgId, id, null);
      await withPrincipal(pool, principal, async (tx) => {
        await requireOrgRole(tx, orgId, 'admin');
        const deleted = await tx.query(`delete from public.knowledge_documents where id = $1 and org_id = $2`, [id, orgId]);
        if (deleted.rowCount !== 1) throw notFound('Knowledge document');
      });
    },
  };
}

export type KnowledgeService = ReturnType<typeof createKnowledgeService>;
