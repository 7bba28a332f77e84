/**
 * The knowledgeRefresh workflow's activities: a scheduled re-fetch of a web page in the
 * knowledge base. The page is asked for conditionally (its ETag / Last-Modified) and its text
 * compared by hash; only a changed page becomes a new revision that indexKnowledgeDocument
 * re-chunks and re-embeds (replacing the chunks in one transaction). A failed re-fetch leaves
 * the document and its chunks as they were and records why.
 */
import { Context } from '@temporalio/activity';
import { withPrincipal } from '../../lib/db.js';
import { DEFAULT_EXTRACTION_LIMITS } from '../../integrations/documents/extract.js';
import { fetchPage } from './fetch-page.js';
import { documentText, pageFetchOptions, type KnowledgeActivityDeps } from './ingest.js';

export interface KnowledgeRefreshRef {
  orgId: string;
  documentId: string;
}

export type RefetchOutcome =
  /** The page's text changed: `revision` holds it, to be indexed. */
  | { status: 'changed'; revision: number }
  /** 304, or the same text: nothing to do. */
  | { status: 'unchanged'; notModified: boolean }
  /** Nothing to refresh now: the document is gone, is no web page, or is being ingested or edited. */
  | { status: 'skipped'; reason: 'gone' | 'not-a-url' | 'busy' };

interface RefreshRow {
  revision: number;
  status: string;
  source_kind: string;
  source_url: string | null;
  content_sha256: string | null;
  source_etag: string | null;
  source_last_modified: string | null;
}

export function createKnowledgeRefreshActivities(deps: KnowledgeActivityDeps) {
  const worker = (orgId: string) => ({ kind: 'worker' as const, orgId });
  const limits = deps.limits ?? DEFAULT_EXTRACTION_LIMITS;

  async function recordFetch(ref: KnowledgeRefreshRef, outcome: 'unchanged' | 'failed', error: string | null, validators?: { etag: string | null; lastModified: string | null }) {
    await withPrincipal(deps.pool, worker(ref.orgId), (tx) =>
      tx.query(
        `update public.knowledge_documents
            set last_fetched_at = now(), last_fetch_outcome = $3, last_fetch_error = $4,
                source_etag = case when $5::boolean then $6 else source_etag end,
                source_last_modified = case when $5::boolean then $7 else source_last_modified end
          where id = $1 and org_id = $2`,
        [ref.documentId, ref.orgId, outcome, error?.slice(0, 1000) ?? null, validators !== undefined, validators?.etag ?? null, validators?.lastModified ?? null],
      ),
    );
  }

  return {
    /**
     * Re-fetches the document's page. A changed text is written as a new revision (status
     * processing, old chunks still searchable) only if nobody edited the document meanwhile.
     */
    async refetchKnowledgeUrl(ref: KnowledgeRefreshRef): Promise<RefetchOutcome> {
      const doc = await withPrincipal(deps.pool, worker(ref.orgId), async (tx) => {
        const { rows } = await tx.query<RefreshRow>(
          `select revision, status, source_kind, source_url, content_sha256, source_etag, source_last_modified
             from public.knowledge_documents where id = $1 and org_id = $2`,
          [ref.documentId, ref.orgId],
        );
        return rows[0];
      });
      if (!doc) return { status: 'skipped', reason: 'gone' };
      if (doc.source_kind !== 'url' || !doc.source_url) return { status: 'skipped', reason: 'not-a-url' };
      // An upload or the first ingestion is under way: it fetches the page itself.
      if (doc.status === 'pending' || doc.status === 'processing') return { status: 'skipped', reason: 'busy' };
      // Only a ready document's chunks match its hash and validators; a failed one (its last
      // text never indexed) is fetched and indexed in full.
      const indexedHash = doc.status === 'ready' ? doc.content_sha256 : null;
      const since = indexedHash ? { etag: doc.source_etag, lastModified: doc.source_last_modified } : undefined;
      const page = await fetchPage(doc.source_url, pageFetchOptions(deps), since);
      if (page.status === 'not-modified') {
        await recordFetch(ref, 'unchanged', null);
        return { status: 'unchanged', notModified: true };
      }
      Context.current().heartbeat();
      const { text, pages, sha256 } = await documentText(page.bytes, page.mediaType, limits);
      if (sha256 === indexedHash) {
        await recordFetch(ref, 'unchanged', null, page.validators);
        return { status: 'unchanged', notModified: false };
      }
      const written = await withPrincipal(deps.pool, worker(ref.orgId), (tx) =>
        tx.query<{ revision: number }>(
          `update public.knowledge_documents
              set revision = revision + 1, status = 'processing', failure_reason = null, chunks_total = null, chunks_done = 0,
                  body = $4, page_count = $5, content_sha256 = $6, source_etag = $7, source_last_modified = $8,
                  last_fetched_at = now(), last_fetch_outcome = 'changed', last_fetch_error = null
            where id = $1 and org_id = $2 and revision = $3 and status in ('ready', 'failed') and source_kind = 'url'
           returning revision`,
          [ref.documentId, ref.orgId, doc.revision, text, pages, sha256, page.validators.etag, page.validators.lastModified],
        ),
      );
      const revision = written.rows[0]?.revision;
      return revision === undefined ? { status: 'skipped', reason: 'busy' } : { status: 'changed', revision };
    },

    /** Why the last re-fetch failed, shown by the API; the document's chunks are untouched. */
    async recordKnowledgeRefreshFailure(ref: KnowledgeRefreshRef & { reason: string }): Promise<void> {
      await recordFetch(ref, 'failed', ref.reason);
    },
  };
}

export type KnowledgeRefreshActivities = ReturnType<typeof createKnowledgeRefreshActivities>;
