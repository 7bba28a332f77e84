/**
 * Ranking the org's knowledge chunks for a query. Three ranked lists, fused by reciprocal rank
 * fusion (Cormack et al., 2009: score = Σ 1 / (k + rank), k = 60), so no list's raw scores have
 * to be comparable with another's:
 *   1. full-text: the query's words under each chunk's own text search configuration, so
 *      «тарифы» meets the Russian stem of «Тариф» and 'pricing' the English stem of 'prices';
 *   2. vocabulary: the query's words replaced by the org's terms that are trigram-similar to
 *      them (pg_trgm), which catches typos («тарриф») and codes written another way ('KX2040');
 *   3. vectors: cosine similarity of the query's embedding to the chunks' (same model only),
 *      when the caller has an embedding for the query, computed exactly over the chunks a
 *      binary-sketch prefilter and lists 1 and 2 propose.
 * Lexical-only retrieval is lists 1 and 2. Every statement filters on org_id and runs under the
 * caller's RLS scope, so another org's chunks cannot appear.
 */
import type { Tx } from '../../lib/db.js';
import type { ChunkLanguage } from './language.js';
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
/**
 * About how many chunks full-text search reads and ranks at most, whatever the org's size: each
 * costs a heap and a TOAST read of its tsvector (private.knowledge_fulltext caps it at 400 too).
 */
const ROWS_TO_RANK = 400;
/** Vocabulary matches kept per query word. */
const TERMS_PER_WORD = 3;

/**
 * The query's lexemes under each configuration, rarest first in the org, kept while the chunks
 * they match add up to at most ROWS_TO_RANK (the rarest is always kept): one tsquery of OR-ed
 * lexemes per chunk language. A word most chunks contain («цена», 'price') would make Postgres
 * read and rank most of the org's chunks and says little about which one answers, so it goes
 * when rarer words are there, as an IDF weighting would drop it. Counts: knowledge_lexemes.
 */
async function selectiveQueries(tx: Tx, orgId: string, text: string): Promise<Map<ChunkLanguage, string>> {
  const { rows } = await tx.query<{ language: ChunkLanguage; query: string }>(
    `with q (language, lexeme) as (
       select 'ru', lexeme from unnest(to_tsvector('russian', $2))
       union select 'en', lexeme from unnest(to_tsvector('english', $2))
       union select 'simple', lexeme from unnest(to_tsvector('simple', $2))
     ), counted as (
       select q.language, q.lexeme,
              (select coalesce(sum(l.chunks), 0) from public.knowledge_lexemes l
                where l.org_id = $1 and l.language = q.language and l.lexeme = q.lexeme) as n
         from q
     ), ordered as (
       select language, lexeme, n, sum(n) over (order by n, language, lexeme) as running,
              row_number() over (order by n, language, lexeme) as ord
         from counted where n > 0
     )
     select language,
            -- tsquery input: a quoted lexeme, quotes doubled and backslashes escaped.
            string_agg('''' || replace(replace(lexeme, '\\', '\\\\'), '''', '''''') || '''', ' | ' order by lexeme) as query
       from ordered
      where ord = 1 or running <= $3
      group by language`,
    [orgId, text, ROWS_TO_RANK],
  );
  return new Map(rows.map((r) => [r.language, r.query]));
}

async function fullTextList(tx: Tx, orgId: string, text: string): Promise<string[]> {
  if (!text) return [];
  const queries = await selectiveQueries(tx, orgId, text);
  if (queries.size === 0) return [];
  // A security definer function, so the GIN index serves @@ under RLS (see the migration
  // 20261207170000_knowledge_search_at_scale.sql); it checks the caller may read the org.
  const { rows } = await tx.query<{ id: string }>(`select id from private.knowledge_fulltext($1, $2::tsquery, $3::tsquery, $4::tsquery, $5)`, [
    orgId,
    queries.get('ru') ?? null,
    queries.get('en') ?? null,
    queries.get('simple') ?? null,
    CANDIDATES,
  ]);
  return rows.map((r) => r.id);
}

/**
 * The org's terms for the query's words: those of the same compact form ('kx2040' → 'kx-2040'),
 * or for a word the vocabulary lacks, those trigram-similar to it (≥ pg_trgm.similarity_threshold, 0.3).
 */
async function similarTerms(tx: Tx, orgId: string, query: string): Promise<string[]> {
  const words = extractTerms(query, 32);
  if (words.length === 0) return [];
  // Index-backed under RLS like fullTextList.
  const { rows } = await tx.query<{ term: string }>(`select term from private.knowledge_similar_terms($1, $2::text[], $3)`, [
    orgId,
    words.map((w) => w.compact),
    TERMS_PER_WORD,
  ]);
  return [...new Set(rows.map((r) => r.term))];
}

/** Chunks whose binary sketch is closest to the query's, rescored exactly (see vectorList). */
const SKETCH_CANDIDATES = 200;

/**
 * Exact cosine (vectors are unit length) over a bounded candidate set, not the org's every chunk:
 * the SKETCH_CANDIDATES chunks whose binary sketches (private.embedding_sketch: a bit per
 * dimension, set above the vector's mean) are closest to the query's in Hamming distance, read
 * from an index-only scan, plus the lexical lists' candidates. No pgvector needed; an exact scan
 * of dot products took seconds at 100k chunks. docs/knowledge.md shows the HNSW index that
 * replaces the prefilter where pgvector exists.
 */
async function vectorList(tx: Tx, orgId: string, embedding: QueryEmbedding, lexical: string[]): Promise<string[]> {
  const { rows } = await tx.query<{ id: string }>(
    `with q as (select private.embedding_sketch($3::real[]) as sketch),
     near as (
       select c.id
         from public.knowledge_chunks c, q
        where c.org_id = $1 and c.embedding_model = $2 and c.embedding_sketch is not null
        -- A model whose dimensions changed under the same name sorts last instead of failing the XOR.
        order by case when length(c.embedding_sketch) = length(q.sketch) then bit_count(c.embedding_sketch # q.sketch) end nulls last, c.id
        limit $5
     )
     select c.id
       from public.knowledge_chunks c
      where c.org_id = $1 and c.embedding_model = $2 and c.embedding is not null
        and c.id in (select id from near union select unnest($6::uuid[]))
      order by (select sum(a * b) from unnest(c.embedding, $3::real[]) as v(a, b)) desc nulls last, c.id
      limit $4`,
    [orgId, embedding.model, embedding.vector, CANDIDATES, SKETCH_CANDIDATES, lexical],
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
  const lists = [await fullTextList(tx, opts.orgId, words.join(' ')), await fullTextList(tx, opts.orgId, terms.join(' '))];
  if (opts.embedding) lists.push(await vectorList(tx, opts.orgId, opts.embedding, [...new Set(lists.flat())]));
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
