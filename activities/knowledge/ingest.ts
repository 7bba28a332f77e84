/**
 * The knowledgeIngest workflow's activities. Text moves through Postgres (the document's body),
 * never through Temporal: the history holds ids, counts and failure reasons only.
 */
import { createHash } from 'node:crypto';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type pg from 'pg';
import { withPrincipal } from '../../lib/db.js';
import type { GuardedFetch } from '../../lib/ssrf.js';
import { extractText, ExtractionError, DEFAULT_EXTRACTION_LIMITS, type ExtractionLimits } from '../../integrations/documents/extract.js';
import type { KnowledgeMediaType } from '../../integrations/documents/media-type.js';
import { EmbeddingError, type Embedder } from '../../integrations/llm/embeddings.js';
import { KnowledgeFailureTypes } from './failure-types.js';
import { extractionFailure, fetchPage, type PageFetchOptions, type PageValidators } from './fetch-page.js';
import { prepareDocument, replaceDocumentChunks } from './store.js';
import { indexVectorCells } from './vector-cells.js';

export interface KnowledgeIngestRef {
  orgId: string;
  documentId: string;
  revision: number;
}

export type ExtractOutcome = { status: 'extracted'; chars: number; pages: number | null } | { status: 'stale' };
export type IndexOutcome = { status: 'ready'; chunks: number; embedded: boolean } | { status: 'stale' };

export interface KnowledgeActivityDeps {
  pool: pg.Pool;
  /** Fetches customer URLs through the SSRF guard. */
  fetchUrl: GuardedFetch;
  /** The org's embedding model, or undefined when it has none (lexical retrieval only). */
  embedderFor?: (orgId: string) => Promise<Embedder | undefined>;
  limits?: ExtractionLimits;
  /** Largest web page fetched (default 5 MB). */
  maxUrlBytes?: number;
  urlTimeoutMs?: number;
  /** Chunks per embeddings request. */
  embedBatch?: number;
}

/** The longest text a document keeps (the column's limit). */
const MAX_TEXT_CHARS = 2_000_000;

/** Text of a file or page as the document keeps it, and its hash (what a re-fetch compares). */
export async function documentText(bytes: Uint8Array, mediaType: KnowledgeMediaType, limits: ExtractionLimits): Promise<{ text: string; pages: number | null; sha256: string }> {
  try {
    const extracted = await extractText(bytes, mediaType, limits);
    const text = extracted.text.slice(0, MAX_TEXT_CHARS);
    return { text, pages: extracted.pages, sha256: textHash(text) };
  } catch (err) {
    if (err instanceof ExtractionError) throw extractionFailure(err.message);
    throw err;
  }
}

export const textHash = (text: string): string => createHash('sha256').update(text).digest('hex');

export function pageFetchOptions(deps: KnowledgeActivityDeps): PageFetchOptions {
  return { fetchUrl: deps.fetchUrl, ...(deps.maxUrlBytes ? { maxBytes: deps.maxUrlBytes } : {}), ...(deps.urlTimeoutMs ? { timeoutMs: deps.urlTimeoutMs } : {}) };
}

interface SourceRow {
  revision: number;
  title: string;
  body: string;
  source_kind: 'text' | 'file' | 'url';
  source_url: string | null;
  media_type: KnowledgeMediaType | null;
  content: Buffer | null;
}

export function createKnowledgeActivities(deps: KnowledgeActivityDeps) {
  const worker = (orgId: string) => ({ kind: 'worker' as const, orgId });
  const limits = deps.limits ?? DEFAULT_EXTRACTION_LIMITS;

  return {
    /** Text of the document's current revision into its body (files and URLs), status processing. */
    async extractKnowledgeText(ref: KnowledgeIngestRef): Promise<ExtractOutcome> {
      const source = await withPrincipal(deps.pool, worker(ref.orgId), async (tx) => {
        const { rows } = await tx.query<SourceRow>(
          `update public.knowledge_documents d set status = 'processing', failure_reason = null
            where d.id = $1 and d.org_id = $2 and d.revision = $3 and d.status in ('pending', 'processing')
           returning d.revision, d.title, d.body, d.source_kind, d.source_url, d.media_type,
                     (select f.content from public.knowledge_document_files f where f.document_id = d.id and f.revision = d.revision) as content`,
          [ref.documentId, ref.orgId, ref.revision],
        );
        return rows[0];
      });
      if (!source) return { status: 'stale' };
      let text: string;
      let pages: number | null = null;
      let validators: PageValidators = { etag: null, lastModified: null };
      if (source.source_kind === 'text') {
        text = source.body;
      } else {
        let bytes: Uint8Array;
        let mediaType: KnowledgeMediaType;
        if (source.source_kind === 'url') {
          const page = await fetchPage(source.source_url!, pageFetchOptions(deps));
          if (page.status !== 'fetched') throw new Error('An unconditional request answered 304.');
          ({ bytes, mediaType, validators } = page);
        } else {
          bytes = source.content!;
          mediaType = source.media_type!;
        }
        Context.current().heartbeat();
        ({ text, pages } = await documentText(bytes, mediaType, limits));
      }
      text = text.slice(0, MAX_TEXT_CHARS);
      // The hash and the page's validators let a scheduled re-fetch tell an unchanged page.
      const written = await withPrincipal(deps.pool, worker(ref.orgId), (tx) =>
        tx.query(
          `update public.knowledge_documents set body = $4, page_count = $5, content_sha256 = $6, source_etag = $7, source_last_modified = $8
            where id = $1 and org_id = $2 and revision = $3`,
          [ref.documentId, ref.orgId, ref.revision, text, pages, textHash(text), validators.etag, validators.lastModified],
        ),
      );
      return written.rowCount === 1 ? { status: 'extracted', chars: text.length, pages } : { status: 'stale' };
    },

    /** Chunks, languages and (with a model) embeddings; replaces the document's chunks at once and marks it ready. */
    async indexKnowledgeDocument(ref: KnowledgeIngestRef): Promise<IndexOutcome> {
      const doc = await withPrincipal(deps.pool, worker(ref.orgId), async (tx) => {
        const { rows } = await tx.query<{ title: string; body: string }>(`select title, body from public.knowledge_documents where id = $1 and org_id = $2 and revision = $3`, [
          ref.documentId,
          ref.orgId,
          ref.revision,
        ]);
        return rows[0];
      });
      if (!doc) return { status: 'stale' };
      const prepared = prepareDocument(doc.body);
      if (prepared.chunks.length === 0) throw extractionFailure('The document contains no text.');
      const progress = (done: number) =>
        withPrincipal(deps.pool, worker(ref.orgId), (tx) =>
          tx.query(`update public.knowledge_documents set chunks_total = $4, chunks_done = $5 where id = $1 and org_id = $2 and revision = $3`, [
            ref.documentId,
            ref.orgId,
            ref.revision,
            prepared.chunks.length,
            done,
          ]),
        );
      await progress(0);
      const embedder = await deps.embedderFor?.(ref.orgId);
      let embeddings: { model: string; vectors: number[][] } | undefined;
      if (embedder) {
        const ctx = Context.current();
        const vectors: number[][] = [];
        const batch = deps.embedBatch ?? 64;
        for (let i = 0; i < prepared.chunks.length; i += batch) {
          try {
            vectors.push(...(await embedder.embed(prepared.chunks.slice(i, i + batch).map((c) => c.passage), ctx.cancellationSignal)));
          } catch (err) {
            if (err instanceof EmbeddingError && !err.retryable) throw ApplicationFailure.nonRetryable(`The embedding model refused: ${err.message}`, KnowledgeFailureTypes.embedding);
            throw err;
          }
          ctx.heartbeat();
          await progress(vectors.length);
        }
        embeddings = { model: embedder.model, vectors };
      }
      const replaced = await withPrincipal(deps.pool, worker(ref.orgId), async (tx) => {
        const ok = await replaceDocumentChunks(tx, { orgId: ref.orgId, documentId: ref.documentId, revision: ref.revision, title: doc.title }, prepared, embeddings);
        if (ok) {
          await tx.query(
            `update public.knowledge_documents
                set status = 'ready', failure_reason = null, language = $4, chunks_total = $5, chunks_done = $5, ingested_at = now()
              where id = $1 and org_id = $2 and revision = $3 and status in ('pending', 'processing')`,
            [ref.documentId, ref.orgId, ref.revision, prepared.language, prepared.chunks.length],
          );
        }
        return ok;
      });
      // After the chunks' own transaction, never inside it: cells are the org's, not the document's.
      if (replaced && embeddings) await indexVectorCells(deps.pool, ref.orgId, embeddings.model, () => Context.current().heartbeat());
      return replaced ? { status: 'ready', chunks: prepared.chunks.length, embedded: embeddings !== undefined } : { status: 'stale' };
    },

    /** Records why ingestion failed, on the revision that failed; the previous chunks stay searchable. */
    async failKnowledgeDocument(ref: KnowledgeIngestRef & { reason: string }): Promise<void> {
      await withPrincipal(deps.pool, worker(ref.orgId), (tx) =>
        tx.query(`update public.knowledge_documents set status = 'failed', failure_reason = $4 where id = $1 and org_id = $2 and revision = $3 and status in ('pending', 'processing')`, [
          ref.documentId,
          ref.orgId,
          ref.revision,
          ref.reason.slice(0, 1000),
        ]),
      );
    },
  };
}

export type KnowledgeActivities = ReturnType<typeof createKnowledgeActivities>;
