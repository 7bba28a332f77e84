-- Knowledge search's helpers keep their plans per connection (issue 15, item 3: p99 ≤ 50 ms at
-- 100k chunks).
--
-- knowledge_fulltext_list, knowledge_fulltext, knowledge_fulltext_common and
-- knowledge_similar_terms were SQL-language functions. Being security definer they are never
-- inlined, and Postgres parses and plans a SQL function's body on every call of the statement
-- that calls it: at 100k chunks, planning the lexeme-count query took 0.6 ms against its 0.7 ms
-- of execution, and a search makes six such calls. PL/pgSQL keeps each statement's plan for the
-- connection's life (custom plans for the first calls, then a generic one when it is as cheap),
-- and pooled connections now live for minutes (DATABASE_POOL_IDLE_SECONDS). Same queries, same
-- checks, same results; knowledge_search's vector list also scores its candidates in one grouped
-- pass instead of a subquery per candidate.

create or replace function private.knowledge_fulltext(p_org_id uuid, p_ru tsquery, p_en tsquery, p_simple tsquery, p_limit int)
returns table (id uuid)
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
begin
  return query
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
     limit least(p_limit, 200);
end
$$;

create or replace function private.knowledge_fulltext_common(p_org_id uuid, p_ru tsquery, p_en tsquery, p_simple tsquery, p_limit int)
returns table (id uuid)
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
begin
  return query
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
     limit least(p_limit, 200);
end
$$;

create or replace function private.knowledge_fulltext_list(p_org_id uuid, p_text text, p_limit int)
returns uuid[]
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
begin
  return (
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
  );
end
$$;

create or replace function private.knowledge_similar_terms(p_org_id uuid, p_compacts text[], p_per_word int)
returns table (term text)
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
begin
  return query
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
     where p_org_id in (select private.org_ids_for('member'));
end
$$;

-- As in 20261209310000; the vector list's exact scores come from one grouped pass over the
-- candidates' components (one unnest, one aggregate) instead of a subquery per candidate.
create or replace function private.knowledge_search(p_org_id uuid, p_words text, p_compacts text[], p_limit int, p_model text default null, p_embedding real[] default null)
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
      ), scored as (
        select c.id, sum(v.a * v.b) as similarity
          from public.knowledge_chunks c
          cross join lateral unnest(c.embedding, p_embedding) as v(a, b)
         where c.org_id = p_org_id and c.embedding_model = p_model and c.embedding is not null
           and c.id in (select id from near union select unnest(v_words || v_terms))
         group by c.id
      )
      select s.id from scored s order by s.similarity desc nulls last, s.id limit 50);
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
