-- Knowledge search when the query's only known word is one most chunks contain (issue 15, item 3:
-- p99 ≤ 50 ms at 100k chunks).
--
-- knowledge_fulltext_list keeps the query's rarest lexeme even when it alone matches more than the
-- 400 chunks the list may rank, so that «цена» asked alone still finds chunks about prices. At 100k
-- chunks «цен» is in 37k of them, and the GIN index hands over the whole posting list before the
-- 400 are taken (a bitmap of 37k entries, 15–25 ms): the slowest lexical searches of the evaluation
-- set («тарриф корпоротивный цена», whose other words are typos the vocabulary list answers) spent
-- most of their time there, for 400 chunks that are an arbitrary sample of the word's anyway.
--
-- When even the rarest lexeme is in more than 10,000 of the org's chunks, the list now walks the
-- org's chunks in index order and keeps the first 400 that match: a word that common is met every
-- few chunks (at 37 %, 400 matches in about 1,100 chunks: 2 ms), and the walk stops after 4,000
-- chunks whatever it found, so its cost is bounded. The ranking of the 400 is as before.

-- The org's first chunks (index order) matching the queries, at most 400 among the first 4,000.
create function private.knowledge_fulltext_common(p_org_id uuid, p_ru tsquery, p_en tsquery, p_simple tsquery, p_limit int)
returns table (id uuid)
language sql
stable
security definer
set search_path = ''
as $$
  select m.id
    from (
      select w.id, w.search, w.language
        from (
          select c.id, c.search, c.language
            from public.knowledge_chunks c
           where c.org_id = p_org_id
             and p_org_id in (select private.org_ids_for('member'))
           -- (org_id, document_id) index order; the bound is what keeps the walk cheap.
           order by c.org_id, c.document_id
           limit 4000
        ) w
       where (w.language = 'ru' and w.search @@ p_ru)
          or (w.language = 'en' and w.search @@ p_en)
          or (w.language = 'simple' and w.search @@ p_simple)
       limit 400
    ) m
   order by ts_rank(m.search, case m.language when 'ru' then p_ru when 'en' then p_en else p_simple end, 1) desc, m.id
   limit least(p_limit, 200)
$$;

-- As in 20261209310000, with the walk above for a lexeme in more than 10,000 chunks.
create or replace function private.knowledge_fulltext_list(p_org_id uuid, p_text text, p_limit int)
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
                 (select query from queries where language = 'simple') as simple,
                 (select min(n) from ordered) > 10000 as common) s
    cross join lateral (
      select g.id, g.ord from private.knowledge_fulltext(p_org_id, s.ru, s.en, s.simple, p_limit) with ordinality as g(id, ord) where not s.common
      union all
      select g.id, g.ord from private.knowledge_fulltext_common(p_org_id, s.ru, s.en, s.simple, p_limit) with ordinality as g(id, ord) where s.common
    ) f
   -- No lexeme the org has: no list, without asking the indexes.
   where s.ru is not null or s.en is not null or s.simple is not null
$$;

revoke execute on function private.knowledge_fulltext_common(uuid, tsquery, tsquery, tsquery, int) from public, anon;
grant execute on function private.knowledge_fulltext_common(uuid, tsquery, tsquery, tsquery, int) to authenticated;
