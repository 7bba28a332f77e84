-- Knowledge search within 50 ms at 100k chunks per org (issue 15, item 3), with other orgs'
-- chunks beside them. Profiled with EXPLAIN (ANALYZE, BUFFERS) on 100k chunks in one org and
-- 100k in another (docs/knowledge.md, "At 100k chunks per org"):
--
-- * The full-text indexes held every org's chunks: `org_id = $1` was a filter after the heap
--   fetch, so the bitmap held other orgs' matches too and Postgres often chose a sequential scan
--   (370 ms for «доставк»). btree_gin lets one GIN index carry (org_id, search): the index itself
--   intersects the org's entries with the lexemes', and only the org's matches reach the heap.
-- * The trigram index on knowledge_terms (one row per document and term) read every org's terms
--   and, per unknown query word, rechecked up to ~1,700 heap rows of duplicates of the same words
--   (30–120 ms a word). knowledge_vocabulary holds each term once per org with a GIN index on
--   (org_id, compact): 2 ms a word.

create extension if not exists btree_gin with schema extensions;

-- Full text: per language as before (a lexeme means different things per configuration), now
-- led by the org. btree_gin's uuid operator class is the default one for GIN, found whatever
-- the search_path.
create index knowledge_chunks_org_search_ru_idx on public.knowledge_chunks using gin (org_id, search) where language = 'ru';
create index knowledge_chunks_org_search_en_idx on public.knowledge_chunks using gin (org_id, search) where language = 'en';
create index knowledge_chunks_org_search_simple_idx on public.knowledge_chunks using gin (org_id, search) where language = 'simple';
drop index public.knowledge_chunks_search_ru_idx;
drop index public.knowledge_chunks_search_en_idx;
drop index public.knowledge_chunks_search_simple_idx;

-- The org's vocabulary, each term once -------------------------------------------------------------------
--
-- Written by ingestion beside knowledge_terms (insert … on conflict do nothing), never updated.
-- It is not pruned when a document goes: knowledge_similar_terms returns only terms some
-- document of the org still has (an index probe of knowledge_terms per match), so a stale row
-- costs index space, never a wrong answer. Rows per org: the org's distinct words and codes.
create table public.knowledge_vocabulary (
  org_id uuid not null references public.organizations (id) on delete cascade,
  term text not null check (char_length(term) between 1 and 100),
  compact text not null check (char_length(compact) between 1 and 100),
  primary key (org_id, term)
);
create index knowledge_vocabulary_org_compact_trgm_idx on public.knowledge_vocabulary using gin (org_id, compact extensions.gin_trgm_ops);

alter table public.knowledge_vocabulary enable row level security;
alter table public.knowledge_vocabulary force row level security;
revoke all on public.knowledge_vocabulary from public, anon, authenticated;
grant all on public.knowledge_vocabulary to service_role;
grant select, delete on public.knowledge_vocabulary to authenticated;
grant insert (org_id, term, compact) on public.knowledge_vocabulary to authenticated;

create policy knowledge_vocabulary_select_member on public.knowledge_vocabulary
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')));
create policy knowledge_vocabulary_insert_worker on public.knowledge_vocabulary
  for insert to authenticated
  with check (org_id = (select private.worker_org_id()));
create policy knowledge_vocabulary_delete_worker on public.knowledge_vocabulary
  for delete to authenticated
  using (org_id = (select private.worker_org_id()));

insert into public.knowledge_vocabulary (org_id, term, compact)
select distinct on (org_id, term) org_id, term, compact from public.knowledge_terms
on conflict do nothing;

-- Trigram matches come from the vocabulary now; exact compact lookups stay on knowledge_terms.
drop index public.knowledge_terms_compact_trgm_idx;

-- Full-text candidates: at most 400 matching chunks are ranked (was 2,000). Search keeps the
-- query's rarest lexemes while they match ≤ 400 chunks (activities/knowledge/search.ts), so the
-- cap binds only for a query of nothing but the org's commonest words, which says too little to
-- rank tens of thousands of chunks for; each ranked chunk costs a heap and a TOAST read of its
-- tsvector. Same signature and org check as before.
create or replace function private.knowledge_fulltext(p_org_id uuid, p_ru tsquery, p_en tsquery, p_simple tsquery, p_limit int)
returns table (id uuid)
language sql
stable
security definer
set search_path = ''
as $$
  select m.id
    from (
      select c.id, c.search, c.language
        from public.knowledge_chunks c
       where c.org_id = p_org_id
         and p_org_id in (select private.org_ids_for('member'))
         and ((c.language = 'ru' and c.search @@ p_ru)
           or (c.language = 'en' and c.search @@ p_en)
           or (c.language = 'simple' and c.search @@ p_simple))
       limit 400
    ) m
   order by ts_rank(m.search, case m.language when 'ru' then p_ru when 'en' then p_en else p_simple end, 1) desc, m.id
   limit least(p_limit, 200)
$$;

-- As before, with the trigram pass over the org's vocabulary (each term once) instead of every
-- document's terms, keeping only terms a document of the org still has.
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
      (select s.term
         from (select v.term, v.compact, extensions.similarity(v.compact, q.compact) as similarity
                 from public.knowledge_vocabulary v
                where v.org_id = p_org_id and v.compact operator(extensions.%) q.compact
                  and not exists (select 1 from public.knowledge_terms e where e.org_id = p_org_id and e.compact = q.compact)
                order by similarity desc, v.term
                -- The closest 20 first, then the check that a document still has them: checked
                -- over every match, Postgres hashes all of the org's terms instead (2 s).
                limit 20) s
        where exists (select 1 from public.knowledge_terms t where t.org_id = p_org_id and t.compact = s.compact and t.term = s.term)
        order by s.similarity desc, s.term
        limit least(p_per_word, 10))
    ) m
   where p_org_id in (select private.org_ids_for('member'))
$$;
