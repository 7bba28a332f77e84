import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withPrincipal } from '../../lib/db.js';
import { searchKnowledge } from '../../activities/knowledge/search.js';
import { detectLanguage } from '../../activities/knowledge/language.js';
import { chunkText } from '../../activities/knowledge/text.js';
import { normalise } from '../../integrations/llm/embeddings.js';
import { fakeEmbedding } from '../../scripts/stack/sandbox-llm.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';
import { seedKnowledge } from '../support/knowledge.js';
import { indexVectorCells } from '../../activities/knowledge/vector-cells.js';

const admin = adminPool({ max: 2 });
const app = appPool({ max: 2 });
afterAll(async () => {
  await admin.end();
  await app.end();
});

let orgA: string;
let orgB: string;
const docs: Record<string, string> = {};

const search = (orgId: string, query: string, limit = 5) =>
  withPrincipal(app, { kind: 'worker', orgId }, (tx) => searchKnowledge(tx, { orgId, query, limit }));
const titles = async (orgId: string, query: string) => (await search(orgId, query)).map((h) => h.title);

beforeAll(async () => {
  orgA = (await createOrgWithMembers(admin, ['owner'])).orgId;
  orgB = (await createOrgWithMembers(admin, ['owner'])).orgId;
  const pools = { admin, app };
  docs.tariff = await seedKnowledge(pools, orgA, 'Тариф', 'Тариф «Бизнес» стоит 4 900 рублей в месяц за одного менеджера. Годовая оплата даёт скидку 15 процентов.');
  docs.delivery = await seedKnowledge(pools, orgA, 'Доставка', 'Мы доставляем заказы курьером по Москве в течение двух рабочих дней. В регионы отправляем транспортной компанией.');
  docs.router = await seedKnowledge(pools, orgA, 'Router specs', 'The KX-2040 router supports Wi-Fi 6 and four gigabit ports. Warranty is 24 months.');
  docs.refunds = await seedKnowledge(pools, orgA, 'Refund policy', 'Customers may return unused licences within 30 days for a full refund of the purchase price.');
  // Org B has a document that would match every query above: it must never appear for org A.
  docs.other = await seedKnowledge(pools, orgB, 'Тариф другой организации', 'Тарифы, доставка, KX-2040, refund, Бизнес: секрет организации B.');
});

describe('knowledge search', () => {
  it('detects Russian, English and other languages per chunk', () => {
    expect(detectLanguage('Тариф «Бизнес» стоит 4 900 рублей в месяц за одного менеджера.')).toBe('ru');
    expect(detectLanguage('The router supports four gigabit ports and the warranty is two years for all of the models we sell.')).toBe('en');
    expect(detectLanguage('Unsere Preise gelten für alle Kunden in Deutschland und Österreich ab dem ersten Januar.')).toBe('simple');
    expect(detectLanguage('Ціни для всіх клієнтів в Україні діють з першого січня.')).toBe('simple');
  });

  it('chunks long text into overlapping passages at sentence borders', () => {
    const sentences = Array.from({ length: 40 }, (_, i) => `Sentence number ${i} says something about pricing.`);
    const chunks = chunkText(sentences.join(' '), { targetChars: 300, maxChars: 400, overlapChars: 80 });
    expect(chunks.length).toBeGreaterThan(4);
    for (const c of chunks) expect(c.passage.length).toBeLessThanOrEqual(400 + 80);
    // Each passage starts with the last sentence of the one before.
    const lastOfFirst = chunks[0]!.passage.split(/(?<=\.)\s+/).at(-1)!;
    expect(chunks[1]!.passage.startsWith(lastOfFirst)).toBe(true);
    expect(chunks.map((c) => c.position)).toEqual(chunks.map((_, i) => i));
  });

  it('stores each chunk with the stemming of its language', async () => {
    const { rows } = await admin.query(`select language, search::text from public.knowledge_chunks where document_id = $1`, [docs.tariff]);
    expect(rows[0].language).toBe('ru');
    expect(rows[0].search).toContain("'тариф'");
    expect(rows[0].search).toContain("'рубл'");
  });

  it('finds the document «Тариф» for the Russian query «тарифы» (morphology)', async () => {
    expect((await titles(orgA, 'тарифы'))[0]).toBe('Тариф');
    expect((await titles(orgA, 'сколько стоят тарифы?'))[0]).toBe('Тариф');
    expect((await titles(orgA, 'доставки курьером'))[0]).toBe('Доставка');
  });

  it('stems English too: "refunds" and "returning" find the refund policy', async () => {
    expect((await titles(orgA, 'refunds'))[0]).toBe('Refund policy');
    expect((await titles(orgA, 'returning licenses'))[0]).toBe('Refund policy');
  });

  it('finds documents despite typos, through trigram similarity to the org vocabulary', async () => {
    expect((await titles(orgA, 'тарриф'))[0]).toBe('Тариф');
    expect((await titles(orgA, 'достовка'))[0]).toBe('Доставка');
    expect((await titles(orgA, 'warrenty'))[0]).toBe('Router specs');
  });

  it('finds product codes written differently', async () => {
    expect((await titles(orgA, 'KX2040'))[0]).toBe('Router specs');
    expect((await titles(orgA, 'kx 2040'))[0]).toBe('Router specs');
    expect((await titles(orgA, 'KX-2040'))[0]).toBe('Router specs');
  });

  it('returns the document, passage and position of each hit', async () => {
    const [hit] = await search(orgA, 'гигабитные порты router');
    expect(hit).toMatchObject({ documentId: docs.router, title: 'Router specs', position: 0, language: 'en' });
    expect(hit!.passage).toContain('KX-2040');
  });

  it("never returns another org's chunks, even when they match better", async () => {
    for (const q of ['тарифы', 'KX2040', 'refund', 'секрет организации B', 'доставка']) {
      const hits = await search(orgA, q, 10);
      expect(hits.map((h) => h.documentId)).not.toContain(docs.other);
    }
    // …and org B finds its own document.
    expect((await search(orgB, 'секрет'))[0]?.documentId).toBe(docs.other);
    // A worker of org B asking for org A's chunks by id gets nothing either (RLS, not just the filter).
    const leaked = await withPrincipal(app, { kind: 'worker', orgId: orgB }, (tx) => tx.query(`select count(*)::int as n from public.knowledge_chunks where org_id = $1`, [orgA]));
    expect(leaked.rows[0].n).toBe(0);
  });

  it("the index-backed search functions give another org's id nothing: they apply the select policy themselves", async () => {
    const asB = (sql: string, params: unknown[]) => withPrincipal(app, { kind: 'worker', orgId: orgB }, (tx) => tx.query(sql, params));
    const fulltext = await asB(`select id from private.knowledge_fulltext($1, 'тариф'::tsquery, 'router'::tsquery, 'тариф'::tsquery, 50)`, [orgA]);
    expect(fulltext.rows).toEqual([]);
    // 'tarif' and 'kx2040' are exact compact forms (knowledge_terms); 'tarrif' is a typo, matched by trigrams in knowledge_vocabulary.
    const terms = await asB(`select term from private.knowledge_similar_terms($1, array['tarif', 'kx2040', 'tarrif'], 3)`, [orgA]);
    expect(terms.rows).toEqual([]);
    // The one-call search and its full-text list, with words and codes that match org A's documents.
    const searchSql = `select document_id, title from private.knowledge_search($1, 'тарифы router', array['тарифы', 'router', 'kx2040', 'tarrif'], 10)`;
    expect((await asB(searchSql, [orgA])).rows).toEqual([]);
    const listSql = `select private.knowledge_fulltext_list($1, 'тарифы router', 50) as ids`;
    expect((await asB(listSql, [orgA])).rows).toEqual([{ ids: [] }]);
    // The same calls for the caller's own org do find rows, so the empty answers above are the check.
    const own = await withPrincipal(app, { kind: 'worker', orgId: orgA }, (tx) => tx.query(`select term from private.knowledge_similar_terms($1, array['tarif', 'kx2040'], 3)`, [orgA]));
    expect(own.rows.map((r) => r.term)).toEqual(expect.arrayContaining(['тариф', 'kx-2040']));
    const typo = await withPrincipal(app, { kind: 'worker', orgId: orgA }, (tx) => tx.query(`select term from private.knowledge_similar_terms($1, array['tarrif'], 3)`, [orgA]));
    expect(typo.rows.map((r) => r.term)).toContain('тариф');
    const asA = (sql: string) => withPrincipal(app, { kind: 'worker', orgId: orgA }, (tx) => tx.query(sql, [orgA]));
    expect((await asA(searchSql)).rows.map((r) => r.title)).toEqual(expect.arrayContaining(['Тариф', 'Router specs']));
    expect((await asA(listSql)).rows[0].ids.length).toBeGreaterThan(0);
  });

  it('keeps each term once in the org vocabulary, and matches only terms a document still has', async () => {
    const pools = { admin, app };
    await seedKnowledge(pools, orgA, 'Zephyrine one', 'The zephyrine gasket fits every model.');
    await seedKnowledge(pools, orgA, 'Zephyrine two', 'Zephyrine gaskets ship in packs of ten.');
    const { rows } = await admin.query(`select count(*)::int as n from public.knowledge_vocabulary where org_id = $1 and term = 'zephyrine'`, [orgA]);
    expect(rows[0].n).toBe(1);
    const similar = (compact: string) =>
      withPrincipal(app, { kind: 'worker', orgId: orgA }, (tx) => tx.query(`select term from private.knowledge_similar_terms($1, array[$2], 3)`, [orgA, compact]));
    expect((await similar('zefyrine')).rows.map((r) => r.term)).toContain('zephyrine');
    // A term only deleted documents had stays in the vocabulary (it is never pruned) but is no longer offered.
    await admin.query(`delete from public.knowledge_documents where org_id = $1 and title like 'Zephyrine%'`, [orgA]);
    expect((await similar('zefyrine')).rows.map((r) => r.term)).not.toContain('zephyrine');
  });

  it('counts how many chunks carry each lexeme, per document, replaced with the chunks', async () => {
    const { rows } = await admin.query(`select language, lexeme, chunks from public.knowledge_lexemes where document_id = $1 order by lexeme`, [docs.tariff]);
    expect(rows).toEqual(expect.arrayContaining([{ language: 'ru', lexeme: 'тариф', chunks: 1 }, { language: 'ru', lexeme: 'рубл', chunks: 1 }]));
  });

  it('ranks by vectors through the sketch prefilter, within the org only', async () => {
    const model = 'sandbox/embed-64';
    const embed = (passages: string[]) => ({ model, vectors: passages.map((p) => normalise(fakeEmbedding(p))) });
    const pools = { admin, app };
    const mine = await seedKnowledge(pools, orgA, 'Heat pump', 'Quietheat pumps warm a house of 120 square metres.', embed);
    const theirs = await seedKnowledge(pools, orgB, 'Heat pump of B', 'Quietheat pumps warm a house of 120 square metres.', embed);
    const { rows } = await admin.query(`select length(embedding_sketch) as bits from public.knowledge_chunks where document_id = $1`, [mine]);
    expect(rows[0].bits).toBe(64);
    // A query no word of which is in any document: only the vector list can find the passage.
    const vector = normalise(fakeEmbedding('quietheat pump warms houses of 120 square metres'));
    const hits = await withPrincipal(app, { kind: 'worker', orgId: orgA }, (tx) =>
      searchKnowledge(tx, { orgId: orgA, query: 'xyzzy', limit: 10, embedding: { model, vector } }),
    );
    expect(hits[0]?.documentId).toBe(mine);
    expect(hits.map((h) => h.documentId)).not.toContain(theirs);
  });

  it('a query whose only known word is in over 10,000 chunks walks a bounded part of the org instead of the word\u2019s whole posting list, and still finds it', async () => {
    const orgC = (await createOrgWithMembers(admin, ['owner'])).orgId;
    const pools = { admin, app };
    const delivery = await seedKnowledge(pools, orgC, 'Доставка', 'Доставка курьером по Москве за два рабочих дня.');
    const pickup = await seedKnowledge(pools, orgC, 'Самовывоз', 'Самовывоз со склада бесплатно, доставка не нужна.');
    await seedKnowledge(pools, orgC, 'Гарантия', 'Гарантия на оборудование два года.');
    /** Which list function ranked the query's words: the GIN one or the walk (transaction-local call counts). */
    const listed = async (query: string, chunksWithWord: number) => {
      const client = await admin.connect();
      try {
        await client.query('begin');
        await client.query(`update public.knowledge_lexemes set chunks = $2 where document_id = $1 and lexeme = 'доставк'`, [delivery, chunksWithWord]);
        await client.query(`set local track_functions = 'all'`);
        await client.query(`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ role: 'authenticated', principal: 'worker', org_id: orgC })]);
        // The backend's counts not yet flushed to the shared statistics include earlier transactions': compare before and after.
        const callCounts = async () => {
          const { rows } = await client.query<{ funcname: string; calls: string }>(
            `select funcname, calls from pg_stat_xact_user_functions where funcname in ('knowledge_fulltext', 'knowledge_fulltext_common')`,
          );
          return new Map(rows.map((r) => [r.funcname, Number(r.calls)]));
        };
        const before = await callCounts();
        const { rows } = await client.query<{ document_id: string }>(`select document_id from private.knowledge_search($1, $2, '{}'::text[], 5)`, [orgC, query]);
        const after = await callCounts();
        const calls = Object.fromEntries([...after].map(([name, n]) => [name, n - (before.get(name) ?? 0)]).filter(([, n]) => n !== 0));
        return { documents: rows.map((r) => r.document_id), calls };
      } finally {
        await client.query('rollback');
        client.release();
      }
    };
    const rare = await listed('доставка', 2);
    expect(rare.calls).toEqual({ knowledge_fulltext: 1 });
    const common = await listed('доставка', 20_000);
    expect(common.calls).toEqual({ knowledge_fulltext_common: 1 });
    // The same chunks either way, ranked alike: the walk only avoids reading 20,000 postings.
    expect(new Set(common.documents)).toEqual(new Set([delivery, pickup]));
    expect(common.documents).toEqual(rare.documents);
  });

  it('answers nothing rather than an error for queries without words', async () => {
    expect(await search(orgA, '?!')).toEqual([]);
    expect(await search(orgA, '"-')).toEqual([]);
  });
});

describe('vector cells (an inverted file over the sketches)', () => {
  const model = 'test/embed-16';
  let orgD: string;
  let documentD: string;
  /** `count` chunks of random 16-dimension unit vectors, written as the superuser (the insert trigger runs for every writer). */
  const addRandomChunks = (count: number, from: number) =>
    admin.query(
      `insert into public.knowledge_chunks (org_id, document_id, position, passage, language, search, embedding, embedding_model)
       select $1, $2, $3 + g.i, 'filler ' || g.i, 'simple', to_tsvector('simple', 'filler'), v.vector, $4
         from generate_series(0, $5 - 1) as g(i)
        cross join lateral (select array_agg(random() - 0.5) as raw from generate_series(1, 16) where g.i >= 0) r
        -- Unit length, as embeddings are stored (integrations/llm/embeddings.ts, normalise).
        cross join lateral (select array_agg((x / sqrt((select sum(y * y) from unnest(r.raw) y)))::real) as vector from unnest(r.raw) x) v`,
      [orgD, documentD, from, model, count],
    );
  const vectorSearch = (vector: number[]) =>
    withPrincipal(app, { kind: 'worker', orgId: orgD }, (tx) => searchKnowledge(tx, { orgId: orgD, query: 'xyzzy', limit: 5, embedding: { model, vector } }));
  const unassigned = async () => Number((await admin.query(`select count(*) from public.knowledge_chunks where org_id = $1 and embedding_cell is null`, [orgD])).rows[0].count);

  beforeAll(async () => {
    orgD = (await createOrgWithMembers(admin, ['owner'])).orgId;
    documentD = (await admin.query(`insert into public.knowledge_documents (org_id, title, body, status) values ($1, 'Filler', '', 'ready') returning id`, [orgD])).rows[0].id;
  });

  it('draws no cells below 5,000 chunks of the model, 256 at 5,000, and gives every earlier chunk its nearest', async () => {
    await addRandomChunks(4_999, 0);
    expect(await indexVectorCells(app, orgD, model)).toEqual({ cells: 0, assigned: 0 });
    expect(await unassigned()).toBe(4_999);
    await addRandomChunks(1, 4_999);
    expect(await indexVectorCells(app, orgD, model)).toEqual({ cells: 256, assigned: 5_000 });
    expect(await unassigned()).toBe(0);
    // Each chunk's cell is its nearest pivot by Hamming distance between sketches.
    const { rows } = await admin.query(
      `select count(*) filter (where c.embedding_cell is distinct from private.knowledge_nearest_cell(c.org_id, c.embedding_model, c.embedding_sketch)) as wrong
         from public.knowledge_chunks c where c.org_id = $1`,
      [orgD],
    );
    expect(Number(rows[0].wrong)).toBe(0);
    // Drawn once: a second call draws nothing new and finds nothing to assign.
    expect(await indexVectorCells(app, orgD, model)).toEqual({ cells: 256, assigned: 0 });
  });

  it('gives a chunk written after the draw its cell as it is inserted, and reads only the query\u2019s nearest cells and chunks without one', async () => {
    const vector = normalise(Array.from({ length: 16 }, (_, i) => Math.sin(i + 1)));
    const target = await seedKnowledge({ admin, app }, orgD, 'Target', 'The one passage the vector points at.', () => ({ model, vectors: [vector] }));
    const cell = async () => (await admin.query(`select embedding_cell from public.knowledge_chunks where document_id = $1`, [target])).rows[0].embedding_cell as number | null;
    const nearest = (await admin.query(`select private.knowledge_nearest_cell($1, $2, private.embedding_sketch($3::real[])) as cell`, [orgD, model, vector])).rows[0].cell as number;
    expect(await cell()).toBe(nearest);
    expect((await vectorSearch(vector))[0]?.documentId).toBe(target);

    // Moved to the cell farthest from the query, the chunk is not read at all…
    await admin.query(
      `update public.knowledge_chunks set embedding_cell = (select k.cell from public.knowledge_vector_cells k where k.org_id = $2 and k.embedding_model = $3
                                                              order by bit_count(k.pivot # private.embedding_sketch($4::real[])) desc, k.cell limit 1)
        where document_id = $1`,
      [target, orgD, model, vector],
    );
    expect((await vectorSearch(vector)).map((h) => h.documentId)).not.toContain(target);
    // …and without a cell it is always read.
    await admin.query(`update public.knowledge_chunks set embedding_cell = null where document_id = $1`, [target]);
    expect((await vectorSearch(vector))[0]?.documentId).toBe(target);
  });

  it('lets only the org\u2019s own worker draw or assign its cells, and shows them to its members only', async () => {
    for (const fn of [`private.knowledge_draw_vector_cells($1, '${model}')`, `private.knowledge_assign_vector_cells($1, '${model}', 10)`]) {
      await expect(withPrincipal(app, { kind: 'worker', orgId: orgB }, (tx) => tx.query(`select ${fn}`, [orgD]))).rejects.toMatchObject({ code: '42501' });
    }
    const seen = await withPrincipal(app, { kind: 'worker', orgId: orgB }, (tx) => tx.query(`select count(*) from public.knowledge_vector_cells where org_id = $1`, [orgD]));
    expect(Number(seen.rows[0].count)).toBe(0);
  });
});
