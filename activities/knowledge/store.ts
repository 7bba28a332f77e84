/**
 * Writing a document's chunks and vocabulary: one transaction that replaces whatever the
 * document had, and only while the ingested revision is still the document's current one (a
 * re-upload during an ingestion wins; the stale ingestion writes nothing).
 */
import type { Tx } from '../../lib/db.js';
import { detectLanguage, type ChunkLanguage } from './language.js';
import { chunkText, extractTerms, searchText, type Chunk, type ChunkingOptions, DEFAULT_CHUNKING } from './text.js';

export interface PreparedChunk extends Chunk {
  language: ChunkLanguage;
}

export interface PreparedDocument {
  chunks: PreparedChunk[];
  /** The language most of the text is in. */
  language: ChunkLanguage;
}

export function prepareDocument(text: string, opts: ChunkingOptions = DEFAULT_CHUNKING): PreparedDocument {
  const chunks = chunkText(text, opts).map((c) => ({ ...c, language: detectLanguage(c.passage) }));
  const weight = new Map<ChunkLanguage, number>();
  for (const c of chunks) weight.set(c.language, (weight.get(c.language) ?? 0) + c.passage.length);
  const language = [...weight].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'simple';
  return { chunks, language };
}

export interface ChunkEmbeddings {
  model: string;
  /** One unit-length vector per chunk, in chunk order. */
  vectors: number[][];
}

/**
 * Replaces the document's chunks and terms; false (and nothing written) when `revision` is no
 * longer the document's current revision.
 */
export async function replaceDocumentChunks(
  tx: Tx,
  doc: { orgId: string; documentId: string; revision: number; title: string },
  prepared: PreparedDocument,
  embeddings?: ChunkEmbeddings,
): Promise<boolean> {
  const current = await tx.query<{ revision: number }>(
    `select revision from public.knowledge_documents where id = $1 and org_id = $2 for update`,
    [doc.documentId, doc.orgId],
  );
  if (current.rows[0]?.revision !== doc.revision) return false;
  await tx.query(`delete from public.knowledge_chunks where document_id = $1 and org_id = $2`, [doc.documentId, doc.orgId]);
  await tx.query(`delete from public.knowledge_terms where document_id = $1 and org_id = $2`, [doc.documentId, doc.orgId]);
  await tx.query(`delete from public.knowledge_lexemes where document_id = $1 and org_id = $2`, [doc.documentId, doc.orgId]);
  const { chunks } = prepared;
  const heading = doc.title.slice(0, 1000);
  // Batches keep each statement's parameter arrays to a few MB.
  for (let start = 0; start < chunks.length; start += 500) {
    const batch = chunks.slice(start, start + 500);
    const dims = embeddings?.vectors[0]?.length ?? 0;
    await tx.query(
      `insert into public.knowledge_chunks (org_id, document_id, position, heading, passage, language, search, embedding, embedding_model)
       select $1, $2, c.position, $3, c.passage, c.language,
              case c.language
                when 'ru' then setweight(to_tsvector('russian', $11), 'A') || to_tsvector('russian', c.normalised)
                when 'en' then setweight(to_tsvector('english', $11), 'A') || to_tsvector('english', c.normalised)
                else setweight(to_tsvector('simple', $11), 'A') || to_tsvector('simple', c.normalised)
              end,
              case when $8 > 0 then ($7::real[])[(c.ord - 1) * $8 + 1 : c.ord * $8] end, $9
         from unnest($4::int[], $5::text[], $6::text[], $10::text[]) with ordinality as c(position, passage, language, normalised, ord)`,
      [
        doc.orgId,
        doc.documentId,
        heading,
        batch.map((c) => c.position),
        batch.map((c) => c.passage),
        batch.map((c) => c.language),
        // Vectors flattened into one real[] (one parameter, not one per chunk), sliced back per row.
        dims > 0 ? batch.flatMap((c) => embeddings!.vectors[c.position]!) : [],
        dims,
        dims > 0 ? embeddings!.model : null,
        batch.map((c) => searchText(c.passage)),
        searchText(heading),
      ],
    );
  }
  // How many of the document's chunks carry each lexeme: search drops the org's most common ones.
  await tx.query(
    `insert into public.knowledge_lexemes (org_id, document_id, language, lexeme, chunks)
     select $1, $2, c.language, l.lexeme, count(*)
       from public.knowledge_chunks c cross join lateral unnest(c.search) as l
      where c.document_id = $2 and c.org_id = $1
      group by c.language, l.lexeme`,
    [doc.orgId, doc.documentId],
  );
  const terms = extractTerms(`${doc.title}\n${chunks.map((c) => c.passage).join('\n')}`);
  for (let start = 0; start < terms.length; start += 5000) {
    const batch = terms.slice(start, start + 5000);
    await tx.query(
      `insert into public.knowledge_terms (org_id, document_id, term, compact)
       select $1, $2, t.term, t.compact from unnest($3::text[], $4::text[]) as t(term, compact)`,
      [doc.orgId, doc.documentId, batch.map((t) => t.term), batch.map((t) => t.compact)],
    );
    // The org's vocabulary holds each term once, for trigram matching (typos); rows other
    // documents already added stay as they are.
    await tx.query(
      `insert into public.knowledge_vocabulary (org_id, term, compact)
       select $1, t.term, t.compact from unnest($2::text[], $3::text[]) as t(term, compact)
       on conflict do nothing`,
      [doc.orgId, batch.map((t) => t.term), batch.map((t) => t.compact)],
    );
  }
  return true;
}
