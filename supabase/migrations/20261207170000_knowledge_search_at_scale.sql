-- Knowledge search at 100k chunks per org (issue 15, item 3: search p99 ≤ 50 ms): index-backed
-- retrieval under RLS (the functions at the end) and how many chunks carry each lexeme.
--
-- Full-text search ORs the query's words. A word every other chunk contains («цена», 'price',
-- «пользователь») then matches tens of thousands of chunks, each of which Postgres must read
-- and rank: at 100k chunks one such query took seconds. Knowing each lexeme's chunk count in the
-- org, search keeps the query's rarest lexemes within a budget of rows to rank and drops the
-- common ones, as an IDF weighting would (activities/knowledge/search.ts). The counts are per
-- document so that ingestion replaces them with the document's chunks, in the same transaction,
-- without two ingestions of one org ever updating the same row.

create table public.knowledge_lexemes (
  org_id uuid not null,
  document_id uuid not null,
  -- The chunks' language, which names the text search configuration that made the lexeme.
  language text not null check (language in ('ru', 'en', 'simple')),
  lexeme text not null check (char_length(lexeme) between 1 and 2047),
  chunks int not null check (chunks >= 1),
  primary key (document_id, language, lexeme),
  foreign key (org_id, document_id) references public.knowledge_documents (org_id, id) on delete cascade
);
-- Search sums a lexeme's chunks over the org's documents: one index range, the sum from the index.
create index knowledge_lexemes_org_lexeme_idx on public.knowledge_lexemes (org_id, language, lexeme) include (chunks);

alter table public.knowledge_lexemes enable row level security;
alter table public.knowledge_lexemes force row level security;
revoke all on public.knowledge_lexemes from public, anon, authenticated;
grant all on public.knowledge_lexemes to service_role;
grant select, delete on public.knowledge_lexemes to authenticated;
grant insert (org_id, document_id, language, lexeme, chunks) on public.knowledge_lexemes to authenticated;

create policy knowledge_lexemes_select_member on public.knowledge_lexemes
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')));
create policy knowledge_lexemes_insert_worker on public.knowledge_lexemes
  for insert to authenticated
  with check (org_id = (select private.worker_org_id()));
create policy knowledge_lexemes_delete_worker on public.knowledge_lexemes
  for delete to authenticated
  using (org_id = (select private.worker_org_id()));

-- Documents ingested before this migration get their counts from the chunks they have.
insert into public.knowledge_lexemes (org_id, document_id, language, lexeme, chunks)
select c.org_id, c.document_id, c.language, l.lexeme, count(*)
  from public.knowledge_chunks c cross join lateral unnest(c.search) as l
 group by c.org_id, c.document_id, c.language, l.lexeme;

-- One full-text index per chunk language. A lexeme means different things per configuration
-- ('price' is an English stem and a 'simple' word), and search asks each language for its own
-- lexemes: with one index over all chunks, asking the few 'simple' chunks for 'price' made
-- Postgres fetch and discard every English chunk with 'price' too.
drop index public.knowledge_chunks_search_idx;
create index knowledge_chunks_search_ru_idx on public.knowledge_chunks using gin (search) where language = 'ru';
create index knowledge_chunks_search_en_idx on public.knowledge_chunks using gin (search) where language = 'en';
create index knowledge_chunks_search_simple_idx on public.knowledge_chunks using gin (search) where language = 'simple';

-- Exact lookups of a query word's compact form in the org's vocabulary (replaces the org_id index).
create index knowledge_terms_org_compact_idx on public.knowledge_terms (org_id, compact);
drop index public.knowledge_terms_org_id_idx;

-- Index-backed retrieval under row-level security ------------------------------------------------------
--
-- Postgres may use a condition as an index condition ahead of a table's RLS policy only when its
-- operator is leakproof (otherwise the condition could leak rows the policy hides through an
-- error or a side channel). Neither tsvector's @@ nor pg_trgm's % is leakproof, and marking them
-- so needs a superuser, which Supabase does not give. Under the policies, search therefore read
-- every chunk of the org and every vocabulary row of every org: 2 s for one word at 100k chunks.
-- These two functions run the index-backed part of search with the definer's rights and apply the
-- select policy themselves: the org must be one the caller may read as a member
-- (private.org_ids_for('member'), exactly the policy's test), so another org's id yields nothing.
-- They return chunk ids and terms only; the passages are read afterwards under RLS.

create or replace function private.knowledge_fulltext(p_org_id uuid, p_ru tsquery, p_en tsquery, p_simple tsquery, p_limit int)
returns table (id uuid)
language sql
stable
security definer
set search_path = ''
as $$
  -- At most 2,000 matching chunks are ranked: search leaves out the org's common lexemes when
  -- rarer ones are in the query, and a query of nothing but common words («цена») says too little
  -- to be worth reading tens of thousands of chunks for.
  select m.id
    from (
      select c.id, c.search, c.language
        from public.knowledge_chunks c
       where c.org_id = p_org_id
         and p_org_id in (select private.org_ids_for('member'))
         and ((c.language = 'ru' and c.search @@ p_ru)
           or (c.language = 'en' and c.search @@ p_en)
           or (c.language = 'simple' and c.search @@ p_simple))
       limit 2000
    ) m
   order by ts_rank(m.search, case m.language when 'ru' then p_ru when 'en' then p_en else p_simple end, 1) desc, m.id
   limit least(p_limit, 200)
$$;

-- For each compact query word, the org's terms of exactly that compact form ('kx2040' → 'kx-2040')
-- when there are any, and only otherwise (an unknown word: a typo, a code written another way)
-- the terms trigram-similar to it (pg_trgm.similarity_threshold): the closest p_per_word of each.
-- A trigram scan costs tens of milliseconds in a vocabulary of a million rows; an exact lookup
-- well under one.
create or replace function private.knowledge_similar_terms(p_org_id uuid, p_compacts text[], p_per_word int)
returns table (term text)
language sql
stable
security definer
set search_path = ''
as $$
  select m.term
    from unnest(p_compacts[1:32]) as q(compact)
    cross join lateral (
      (select e.term
         from public.knowledge_terms e
        where e.org_id = p_org_id and e.compact = q.compact
        group by e.term
        order by e.term
        limit least(p_per_word, 10))
      union all
      (select t.term
         from public.knowledge_terms t
        where t.org_id = p_org_id and t.compact operator(extensions.%) q.compact
          and not exists (select 1 from public.knowledge_terms e where e.org_id = p_org_id and e.compact = q.compact)
        group by t.term
        order by max(extensions.similarity(t.compact, q.compact)) desc, t.term
        limit least(p_per_word, 10))
    ) m
   where p_org_id in (select private.org_ids_for('member'))
$$;

revoke execute on function private.knowledge_fulltext(uuid, tsquery, tsquery, tsquery, int) from public, anon;
revoke execute on function private.knowledge_similar_terms(uuid, text[], int) from public, anon;
grant execute on function private.knowledge_fulltext(uuid, tsquery, tsquery, tsquery, int) to authenticated;
grant execute on function private.knowledge_similar_terms(uuid, text[], int) to authenticated;
