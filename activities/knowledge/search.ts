/**
 * Ranking the org's knowledge chunks for a query. Three ranked lists, fused by reciprocal rank
 * fusion (Cormack et al., 2009: score = Σ 1 / (k + rank), k = 60), so no list's raw scores have
 * to be comparable with another's:
 *   1. full-text: the query's words under each chunk's own text search configuration, so
 *      «тарифы» meets the Russian stem of «Тариф» and 'pricing' the English stem of 'prices';
 *   2. vocabulary: the query's words replaced by the org's terms that are trigram-similar to
 *      them (pg_trgm), which catches typos («тарриф») and codes written another way ('KX2040');
 *   3. vectors: cosine similarity of the query's embedding to the chunks' (same model only),
 *      when the caller has an embedding for the query.
 * Lexical-only retrieval is lists 1 and 2. Every statement filters on org_id and runs under the
 * caller's RLS scope, so another org's chunks cannot appear.
 */
import type { Tx } from '../../lib/db.js';
import { extractTerms, searchText, TOKEN } from './text.js';

export interface KnowledgeHit {
  documentId: string;
  title: string;
  position: number;
  passage: string;
  language: string;
  score: number;
}

export interface QueryEmbedding {
  model: string;
  vector: number[];
}

export interface SearchOptions {
  orgId: string;
  query: string;
  limit: number;
  embedding?: QueryEmbedding | undefined;
}

/** How deep each list is read before fusion. */
const CANDIDATES = 50;
const RRF_K = 60;
/** Vocabulary matches kept per query word. */
const TERMS_PER_WORD = 3;

/** websearch_to_tsquery never raises on odd input; quotes and a leading '-' are its syntax, so they go. */
function orQuery(words: string[]): string {
  return words
    .map((w) => w.replace(/["']/g, ' ').replace(/^-+/, '').trim())
    .filter(Boolean)
    .join(' or ');
}

async function fullTextList(tx: Tx, orgId: string, text: string): Promise<string[]> {
  if (!text) return [];
  const { rows } = await tx.query<{ id: string }>(
    `select c.id
       from public.knowledge_chunks c
      where c.org_id = $1
        and ((c.language = 'ru' and c.search @@ websearch_to_tsquery('russian', $2))
          or (c.language = 'en' and c.search @@ websearch_to_tsquery('english', $2))
          or (c.language = 'simple' and c.search @@ websearch_to_tsquery('simple', $2)))
      order by ts_rank(c.search, case c.language when 'ru' then websearch_to_tsquery('russian', $2)
                                                 when 'en' then websearch_to_tsquery('english', $2)
                                                 else websearch_to_tsquery('simple', $2) end, 1) desc, c.id
      limit $3`,
    [orgId, text, CANDIDATES],
  );
  return rows.map((r) => r.id);
}

/** The org's terms trigram-similar to the query's words (similarity ≥ pg_trgm.similarity_threshold, 0.3). */
async function similarTerms(tx: Tx, orgId: string, query: string): Promise<string[]> {
  const words = extractTerms(query, 32);
  if (words.length === 0) return [];
  const { rows } = await tx.query<{ term: string }>(
    `select m.term
       from unnest($2::text[]) as q(compact)
       cross join lateral (
         select t.term, max(extensions.similarity(t.compact, q.compact)) as sim
           from public.knowledge_terms t
          where t.org_id = $1 and t.compact operator(extensions.%) q.compact
          group by t.term
          order by sim desc, t.term
          limit $3
       ) m`,
    [orgId, words.map((w) => w.compact), TERMS_PER_WORD],
  );
  return [...new Set(rows.map((r) => r.term))];
}

async function vectorList(tx: Tx, orgId: string, embedding: QueryEmbedding): Promise<string[]> {
  // Exact cosine (vectors are unit length) over the org's chunks of the same model: no pgvector
  // needed. docs/knowledge.md shows the HNSW index that replaces this scan where pgvector exists.
  const { rows } = await tx.query<{ id: string }>(
    `select c.id
       from public.knowledge_chunks c
      where c.org_id = $1 and c.embedding_model = $2 and c.embedding is not null
      order by (select sum(a * b) from unnest(c.embedding, $3::real[]) as v(a, b)) desc nulls last, c.id
      limit $4`,
    [orgId, embedding.model, embedding.vector, CANDIDATES],
  );
  return rows.map((r) => r.id);
}

export function reciprocalRankFusion(lists: string[][], k = RRF_K): Map<string, number> {
  const scores = new Map<string, number>();
  for (const list of lists) list.forEach((id, rank) => scores.set(id, (scores.get(id) ?? 0) + 1 / (k + rank + 1)));
  return scores;
}

export async function searchKnowledge(tx: Tx, opts: SearchOptions): Promise<KnowledgeHit[]> {
  const words = searchText(opts.query).match(TOKEN) ?? [];
  const terms = await similarTerms(tx, opts.orgId, opts.query);
  const lists = [await fullTextList(tx, opts.orgId, orQuery(words)), await fullTextList(tx, opts.orgId, orQuery(terms))];
  if (opts.embedding) lists.push(await vectorList(tx, opts.orgId, opts.embedding));
  const fused = [...reciprocalRankFusion(lists)].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, opts.limit);
  if (fused.length === 0) return [];
  const { rows } = await tx.query<{ id: string; document_id: string; title: string; position: number; passage: string; language: string }>(
    `select c.id, c.document_id, d.title, c.position, c.passage, c.language
       from public.knowledge_chunks c join public.knowledge_documents d on d.id = c.document_id and d.org_id = c.org_id
      where c.org_id = $1 and c.id = any ($2::uuid[])`,
    [opts.orgId, fused.map(([id]) => id)],
  );
  const byId = new Map(rows.map((r) => [r.id, r]));
  return fused.flatMap(([id, score]) => {
    const r = byId.get(id);
    return r ? [{ documentId: r.document_id, title: r.title, position: r.position, passage: r.passage, language: r.language, score }] : [];
  });
}
