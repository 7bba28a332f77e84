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
 * Lexical-only retrieval is lists 1 and 2. The ranking lives in private.knowledge_search, which
 * checks the caller may read the org and filters every read on it, so another org's chunks
 * cannot appear.
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

/**
 * One statement, one round trip: private.knowledge_search (migration
 * 20261209310000_knowledge_search_one_call.sql) runs the lists and their fusion inside Postgres,
 * where each of the 6 statements this took before waited for a core again under load. The
 * query's words and their compact forms are found here, by the same rules ingestion uses.
 */
export async function searchKnowledge(tx: Tx, opts: SearchOptions): Promise<KnowledgeHit[]> {
  const words = searchText(opts.query).match(TOKEN) ?? [];
  const { rows } = await tx.query<{ document_id: string; title: string; position: number; passage: string; language: string; score: number }>(
    `select document_id, title, position, passage, language, score from private.knowledge_search($1, $2, $3::text[], $4, $5, $6::real[])`,
    [opts.orgId, words.join(' '), extractTerms(opts.query, 32).map((w) => w.compact), opts.limit, opts.embedding?.model ?? null, opts.embedding?.vector ?? null],
  );
  return rows.map((r) => ({ documentId: r.document_id, title: r.title, position: r.position, passage: r.passage, language: r.language, score: r.score }));
}
