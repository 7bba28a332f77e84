import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withPrincipal } from '../../lib/db.js';
import { searchKnowledge } from '../../activities/knowledge/search.js';
import { normalise } from '../../integrations/llm/embeddings.js';
import { fakeEmbedding } from '../../scripts/stack/sandbox-llm.js';
import { loadDocuments, loadQuestions } from '../../bench/knowledge/dataset.js';
import { fillerDocument } from '../../bench/knowledge/filler.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';
import { seedKnowledge } from '../support/knowledge.js';
import { indexVectorCells } from '../../activities/knowledge/vector-cells.js';

/**
 * Retrieval quality on the evaluation set (bench/knowledge, the questions `npm run bench:knowledge`
 * scores) must not regress when search is made faster. The set is ingested the way ingestion
 * writes it, with about 6,000 filler chunks beside it: enough that the commonest words («цена»,
 * 'price', «доставка») match more chunks than full-text search ranks (400), so the caps that
 * keep search fast at 100k chunks bind here too, and that the org gets its vector cells (drawn
 * at 5,000 chunks), so fused search reads the query's nearest cells as it does at 100k. Floors: the figures of the benchmark at 100k
 * chunks (docs/knowledge.md), rounded down.
 */
const admin = adminPool({ max: 2 });
const app = appPool({ max: 2 });
afterAll(async () => {
  await admin.end();
  await app.end();
});

const MODEL = 'sandbox/embed-64';
const embed = (passages: string[]) => ({ model: MODEL, vectors: passages.map((p) => normalise(fakeEmbedding(p))) });
const questions = loadQuestions();
let orgId: string;
const evalIdOf = new Map<string, string>();

beforeAll(async () => {
  orgId = (await createOrgWithMembers(admin, ['owner'])).orgId;
  const pools = { admin, app };
  for (const doc of loadDocuments()) evalIdOf.set(await seedKnowledge(pools, orgId, doc.title, doc.body, embed), doc.id);
  for (let seed = 1; seed <= 32; seed++) {
    const filler = fillerDocument(seed, 200 * 760);
    await seedKnowledge(pools, orgId, filler.title, filler.body, embed);
  }
  // As ingestion does after storing a document (activities/knowledge/ingest.ts).
  await indexVectorCells(app, orgId, MODEL);
}, 300_000);

async function score(fused: boolean): Promise<{ recall5: number; mrr: number; misses: string[] }> {
  let found = 0;
  let reciprocal = 0;
  const misses: string[] = [];
  for (const q of questions) {
    const embedding = fused ? { model: MODEL, vector: normalise(fakeEmbedding(q.question)) } : undefined;
    const hits = await withPrincipal(app, { kind: 'worker', orgId }, (tx) => searchKnowledge(tx, { orgId, query: q.question, limit: 10, embedding }));
    const at = hits.findIndex((h) => evalIdOf.get(h.documentId) === q.expected);
    if (at >= 0 && at < 5) found++;
    else misses.push(`${q.id} «${q.question}»`);
    if (at >= 0) reciprocal += 1 / (at + 1);
  }
  return { recall5: found / questions.length, mrr: reciprocal / questions.length, misses };
}

// Each scoring runs the 110 questions one after another, 7–8 statements each: seconds on an idle
// machine, up to a minute on the shared 2-core one under a load of 20.
const SCORING_TIMEOUT_MS = 180_000;

describe('knowledge retrieval quality on the evaluation set, among filler', () => {
  it('has the evaluation set and the filler in the org, every chunk in one of its vector cells', async () => {
    const { rows } = await admin.query<{ n: number; cells: number }>(
      `select count(*)::int as n, count(distinct embedding_cell)::int as cells from public.knowledge_chunks where org_id = $1 and embedding_cell is not null`,
      [orgId],
    );
    expect(rows[0]!.n).toBeGreaterThan(5000);
    expect(rows[0]!.cells).toBeGreaterThan(100);
  });

  it('keeps lexical-only recall@5 and MRR@10', async () => {
    const { recall5, mrr, misses } = await score(false);
    expect(recall5, misses.join('; ')).toBeGreaterThanOrEqual(0.9);
    expect(mrr).toBeGreaterThanOrEqual(0.8);
  }, SCORING_TIMEOUT_MS);

  it('keeps fused recall@5 and MRR@10 (fake embeddings)', async () => {
    const { recall5, mrr, misses } = await score(true);
    expect(recall5, misses.join('; ')).toBeGreaterThanOrEqual(0.9);
    expect(mrr).toBeGreaterThanOrEqual(0.8);
  }, SCORING_TIMEOUT_MS);
});
