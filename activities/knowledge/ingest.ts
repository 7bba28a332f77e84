/**
 * The knowledgeIngest workflow's activities. Text moves through Postgres (the document's body),
 * never through Temporal: the history holds ids, counts and failure reasons only.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import type pg from 'pg';
import type { Response as UndiciResponse } from 'undici';
import { withPrincipal } from '../../lib/db.js';
import { UnsafeUrlError, type GuardedFetch } from '../../lib/ssrf.js';
import { extractText, ExtractionError, DEFAULT_EXTRACTION_LIMITS, type ExtractionLimits } from '../../integrations/documents/extract.js';
import { sniffMediaType, type KnowledgeMediaType } from '../../integrations/documents/media-type.js';
import { EmbeddingError, type Embedder } from '../../integrations/llm/embeddings.js';
import { KnowledgeFailureTypes } from './failure-types.js';
import { prepareDocument, replaceDocumentChunks } from './store.js';

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

interface SourceRow {
  revision: number;
  title: string;
  body: string;
  source_kind: 'text' | 'file' | 'url';
  source_url: string | null;
  media_type: KnowledgeMediaType | null;
  content: Buffer | null;
}

function extractionFailure(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, KnowledgeFailureTypes.extraction);
}

async function readLimited(response: UndiciResponse, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(response.headers.get('content-length') ?? '0');
  if (declared > maxBytes) throw extractionFailure(`The page is larger than ${maxBytes} bytes.`);
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const part of response.body as AsyncIterable<Uint8Array>) {
    total += part.byteLength;
    if (total > maxBytes) throw extractionFailure(`The page is larger than ${maxBytes} bytes.`);
    parts.push(part);
  }
  return Buffer.concat(parts);
}

export function createKnowledgeActivities(deps: KnowledgeActivityDeps) {
  const worker = (orgId: string) => ({ kind: 'worker' as const, orgId });
  const limits = deps.limits ?? DEFAULT_EXTRACTION_LIMITS;

  async function fetchPage(url: string): Promise<{ bytes: Uint8Array; mediaType: KnowledgeMediaType }> {
    let response;
    try {
      response = await deps.fetchUrl(url, { signal: AbortSignal.timeout(deps.urlTimeoutMs ?? 30_000), headers: { accept: 'text/html, text/plain, application/pdf;q=0.9, */*;q=0.1' } });
    } catch (err) {
      if (err instanceof UnsafeUrlError) throw ApplicationFailure.nonRetryable(`The URL is not allowed: ${err.message}.`, KnowledgeFailureTypes.source);
      throw err; // network trouble: Temporal retries
    }
    if (response.status >= 400 && response.status < 500 && response.status !== 429) {
      await response.body?.cancel();
      throw ApplicationFailure.nonRetryable(`The page answered HTTP ${response.status}.`, KnowledgeFailureTypes.source);
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw ApplicationFailure.retryable(`The page answered HTTP ${response.status}.`, 'KnowledgeSourceBusy');
    }
    const bytes = await readLimited(response, deps.maxUrlBytes ?? 5 * 1024 * 1024);
    const mediaType = sniffMediaType(bytes);
    if (!mediaType || mediaType === 'application/vnd.openxmlformats-officedocument.wordprocessingml.document') {
      throw extractionFailure(`The page is ${response.headers.get('content-type') ?? 'of an unknown type'}, not HTML, text or PDF.`);
    }
    return { bytes, mediaType };
  }

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
      try {
        if (source.source_kind === 'text') {
          text = source.body;
        } else {
          const { bytes, mediaType } =
            source.source_kind === 'url' ? await fetchPage(source.source_url!) : { bytes: source.content!, mediaType: source.media_type! };
          Context.current().heartbeat();
          ({ text, pages } = await extractText(bytes, mediaType, limits));
        }
      } catch (err) {
        if (err instanceof ExtractionError) throw extractionFailure(err.message);
        throw err;
      }
      text = text.slice(0, MAX_TEXT_CHARS);
      const written = await withPrincipal(deps.pool, worker(ref.orgId), (tx) =>
        tx.query(`update public.knowledge_documents set body = $4, page_count = $5 where id = $1 and org_id = $2 and revision = $3`, [
          ref.documentId,
          ref.orgId,
          ref.revision,
          text,
          pages,
        ]),
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
