-- Knowledge search in one statement (issue 15, item 3: p99 ≤ 50 ms at 100k chunks).
--
-- A lexical search was 6 statements after the transaction's own (the vocabulary, the lexeme
-- counts and the full text for the query's words, the same two for the vocabulary's terms, the
-- passages). Each was quick (2–6 ms median at 100k chunks), but on a loaded machine every round
-- trip waits for a core again on both sides, and those waits made most of the p99
-- (docs/knowledge.md, "Benchmark and evaluation set"). private.knowledge_search runs the same
-- steps inside Postgres: one round trip, the same ranking.
--
-- Like knowledge_fulltext and knowledge_similar_terms, these are security definer functions so
-- the GIN indexes serve under RLS; each checks the caller may read the org
-- (private.org_ids_for('member'), the select policy's own test), so another org's id yields
-- nothing, and every read filters on the org.

-- One full-text list: the text's lexemes under each configuration, rarest first in the org,
-- kept while the chunks they match add up to at most 400 (the rarest is always kept), one
-- tsquery of OR-ed lexemes per chunk language; then the chunks matching them, best ts_rank first
-- (knowledge_fulltext). A word most chunks contain («цена», 'price') would make Postgres read
-- and rank most of the org's chunks and says little about which one answers, so it goes when
-- rarer words are there, as an IDF weighting would drop it. Counts: knowledge_lexemes.
-- (Was selectiveQueries + fullTextList in activities/knowledge/search.ts.)
create function private.knowledge_fulltext_list(p_org_id uuid, p_text text, p_limit int)
returns uuid[]
language sql
stable
security definer
set search_path = ''
as $$
  with q (language, lexeme) as (
    select 'ru', lexeme from unnest(to_tsvector('russian', p_text))
    union select 'en', lexeme from unnest(to_tsvector('english', p_text))
    union select 'simple', lexeme from unnest(to_tsvector('simple', p_text))
  ), counted as (
    select q.language, q.lexeme,
           (select coalesce(sum(l.chunks), 0) from public.knowledge_lexemes l
             where l.org_id = p_org_id and l.language = q.language and l.lexeme = q.lexeme) as n
      from q
     where p_org_id in (select private.org_ids_for('member'))
  ), ordered as (
    select language, lexeme, n, sum(n) over (order by n, language, lexeme) as running,
           row_number() over (order by n, language, lexeme) as ord
      from counted where n > 0
  ), queries as (
    select language,
           -- tsquery input: a quoted lexeme, quotes doubled and backslashes escaped.
           string_agg('''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || '''', ' | ' order by lexeme)::tsquery as query
      from ordered
     where ord = 1 or running <= 400
     group by language
  )
  select coalesce(array_agg(f.id order by f.ord), '{}')
    from (select (select query from queries where language = 'ru') as ru,
                 (select query from queries where language = 'en') as en,
                 (select query from queries where language = 'simple') as simple) s
    cross join lateral private.knowledge_fulltext(p_org_id, s.ru, s.en, s.simple, p_limit) with ordinality as f(id, ord)
   -- No lexeme the org has: no list, without asking the indexes.
   where s.ru is not null or s.en is not null or s.simple is not null
$$;

-- The whole search, fused by reciprocal rank fusion (score = Σ 1 / (60 + rank), Cormack et al.,
-- 2009) over: the full-text list of the query's words (p_words: the query's tokens, as
-- activities/knowledge/text.ts finds them), the full-text list of the org's terms similar to
-- them (p_compacts: the words' compact forms; 3 terms a word, knowledge_similar_terms) and,
-- with p_embedding, the vector list. Each list is read 50 deep. Returns the p_limit best
-- chunks, best first, with their documents' titles; ties go to the smaller id.
--
-- Vectors: exact cosine (vectors are unit length) over a bounded candidate set, not the org's
-- every chunk: the 200 chunks whose binary sketches (private.embedding_sketch) are closest to
-- the query's in Hamming distance, read from an index-only scan, plus the lexical lists'
-- candidates; only chunks of the query's embedding model.
create function private.knowledge_search(p_org_id uuid, p_words text, p_compacts text[], p_limit int, p_model text default null, p_embedding real[] default null)
returns table (id uuid, document_id uuid, title text, "position" int, passage text, language text, score double precision)
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_words uuid[];
  v_terms uuid[];
  v_vector uuid[] := '{}';
begin
  if p_org_id is null or p_org_id not in (select private.org_ids_for('member')) then
    return;
  end if;
  v_words := private.knowledge_fulltext_list(p_org_id, p_words, 50);
  v_terms := private.knowledge_fulltext_list(p_org_id, (select string_agg(distinct t.term, ' ') from private.knowledge_similar_terms(p_org_id, p_compacts, 3) t), 50);
  if p_embedding is not null and p_model is not null then
    v_vector := array(
      with q as (select private.embedding_sketch(p_embedding) as sketch),
      near as (
        select c.id
          from public.knowledge_chunks c, q
         where c.org_id = p_org_id and c.embedding_model = p_model and c.embedding_sketch is not null
         -- A model whose dimensions changed under the same name sorts last instead of failing the XOR.
         order by case when length(c.embedding_sketch) = length(q.sketch) then bit_count(c.embedding_sketch # q.sketch) end nulls last, c.id
         limit 200
      )
      select c.id
        from public.knowledge_chunks c
       where c.org_id = p_org_id and c.embedding_model = p_model and c.embedding is not null
         and c.id in (select id from near union select unnest(v_words || v_terms))
       order by (select sum(a * b) from unnest(c.embedding, p_embedding) as v(a, b)) desc nulls last, c.id
       limit 50);
  end if;
  return query
    with fused as (
      select l.id, sum(1.0::double precision / (60 + l.ord)) as score
        from (values (v_words), (v_terms), (v_vector)) as lists (ids)
        cross join lateral unnest(lists.ids) with ordinality as l(id, ord)
       group by l.id
       order by score desc, l.id
       limit greatest(p_limit, 0)
    )
    select c.id, c.document_id, d.title, c.position, c.passage, c.language, f.score
      from fused f
      join public.knowledge_chunks c on c.id = f.id and c.org_id = p_org_id
      join public.knowledge_documents d on d.id = c.document_id and d.org_id = c.org_id
     order by f.score desc, f.id;
end
$$;

revoke execute on function private.knowledge_fulltext_list(uuid, text, int) from public, anon;
revoke execute on function private.knowledge_search(uuid, text, text[], int, text, real[]) from public, anon;
grant execute on function private.knowledge_fulltext_list(uuid, text, int) to authenticated;
grant execute on function private.knowledge_search(uuid, text, text[], int, text, real[]) to authenticated;
