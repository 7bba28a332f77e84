-- Vector search that reads a part of the org's chunks, not all of them (issue 15, item 3: search
-- p99 ≤ 50 ms at 100k chunks, fused search included).
--
-- The binary-sketch prefilter (20261209300100) ranked every embedded chunk of the org by Hamming
-- distance: at 100k chunks an index-only scan of 100k sketches, 15–25 ms of a fused search's
-- ~30 ms median before any load. This is an inverted file over the sketches (the idea of
-- pgvector's ivfflat, in plain SQL): each org and embedding model gets 256 cells whose pivots
-- are the sketches of 256 of its chunks drawn at random (a hash order), so cells follow where the chunks are;
-- each chunk records its nearest pivot; search ranks the pivots (256 Hamming distances), reads
-- the chunks of the 16 nearest cells (about 6 % of the org) and of no cell, and keeps the 200
-- closest of those for the exact dot products, as before.
--
-- Cells are drawn once, when the org has 5,000 chunks of the model (below that the full pass
-- costs ~1 ms), by the ingestion that crosses the mark (activities/knowledge/vector-cells.ts);
-- chunks written later take their nearest pivot as they are inserted. A chunk without a cell
-- (written before the draw and not yet assigned, or of another dimension) is always read, so a
-- missing assignment costs time, never a result. Pivots are not redrawn: a knowledge base that
-- grows far past its first 5,000 chunks keeps cells of those proportions (docs/knowledge.md).

create table public.knowledge_vector_cells (
  org_id uuid not null references public.organizations (id) on delete cascade,
  embedding_model text not null check (char_length(embedding_model) between 1 and 200),
  cell int not null check (cell between 0 and 4095),
  pivot bit varying not null,
  primary key (org_id, embedding_model, cell)
);

alter table public.knowledge_vector_cells enable row level security;
alter table public.knowledge_vector_cells force row level security;
revoke all on public.knowledge_vector_cells from public, anon, authenticated;
grant all on public.knowledge_vector_cells to service_role;
grant select on public.knowledge_vector_cells to authenticated;
-- Written only by private.knowledge_draw_vector_cells (the org's worker, security definer).
create policy knowledge_vector_cells_select_member on public.knowledge_vector_cells
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')));

alter table public.knowledge_chunks add column embedding_cell int;

-- Replaces knowledge_chunks_org_model_sketch_idx: the same index-only reads, now per cell
-- (`embedding_cell = any(…)`, `embedding_cell is null`).
create index knowledge_chunks_org_model_cell_sketch_idx on public.knowledge_chunks (org_id, embedding_model, embedding_cell) include (id, embedding_sketch)
  where embedding_sketch is not null;
drop index public.knowledge_chunks_org_model_sketch_idx;

-- The nearest pivot of a sketch among the org's cells of the model, or null when it has none of
-- the sketch's length.
create function private.knowledge_nearest_cell(p_org_id uuid, p_model text, p_sketch bit varying)
returns int
language sql
stable
security definer
set search_path = ''
as $$
  select k.cell
    from public.knowledge_vector_cells k
   where k.org_id = p_org_id and k.embedding_model = p_model and length(k.pivot) = length(p_sketch)
   order by bit_count(k.pivot # p_sketch), k.cell
   limit 1
$$;

-- Every chunk written with an embedding takes its nearest cell, whoever writes it (the request
-- role cannot choose one: the column is not in its insert grant, and this runs after).
create function private.knowledge_chunk_cell()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  new.embedding_cell := case
    when new.embedding is not null and new.embedding_model is not null
      then private.knowledge_nearest_cell(new.org_id, new.embedding_model, private.embedding_sketch(new.embedding))
  end;
  return new;
end
$$;
create trigger knowledge_chunks_embedding_cell before insert on public.knowledge_chunks
  for each row execute function private.knowledge_chunk_cell();

-- Draws the org's cells for the model once it has 5,000 chunks of it (the caller's org only:
-- the org's worker). Returns how many cells the org has for the model afterwards. Concurrent
-- ingestions of one org serialise on a transaction lock, and the second finds the cells drawn.
create function private.knowledge_draw_vector_cells(p_org_id uuid, p_model text)
returns int
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v_cells int;
  v_length int;
begin
  if p_org_id is null or p_org_id is distinct from private.worker_org_id() then
    raise exception 'only the org''s worker draws its vector cells' using errcode = '42501';
  end if;
  perform pg_advisory_xact_lock(hashtextextended('knowledge_vector_cells:' || p_org_id::text || ':' || p_model, 0));
  select count(*) into v_cells from public.knowledge_vector_cells k where k.org_id = p_org_id and k.embedding_model = p_model;
  if v_cells > 0 then
    return v_cells;
  end if;
  if (select count(*) from (select 1 from public.knowledge_chunks c
                             where c.org_id = p_org_id and c.embedding_model = p_model and c.embedding_sketch is not null
                             limit 5000) s) < 5000 then
    return 0;
  end if;
  -- The model's usual dimension: pivots of one length (a chunk of another stays without a cell).
  select length(c.embedding_sketch) into v_length
    from public.knowledge_chunks c
   where c.org_id = p_org_id and c.embedding_model = p_model and c.embedding_sketch is not null
   group by length(c.embedding_sketch)
   order by count(*) desc, length(c.embedding_sketch) desc
   limit 1;
  insert into public.knowledge_vector_cells (org_id, embedding_model, cell, pivot)
  select p_org_id, p_model, (row_number() over ())::int - 1, d.sketch
    from (select s.sketch
            from (select distinct c.embedding_sketch as sketch
                    from public.knowledge_chunks c
                   where c.org_id = p_org_id and c.embedding_model = p_model and length(c.embedding_sketch) = v_length) s
           -- At random, but the same draw for the same chunks (a hash, not random()): a search's
           -- cells can be reproduced when someone asks why it found what it found.
           order by md5(p_org_id::text || s.sketch::text), s.sketch
           limit 256) d;
  get diagnostics v_cells = row_count;
  return v_cells;
end
$$;

-- Gives up to p_batch of the org's chunks of the model that have no cell their nearest one;
-- returns how many it gave one (0: none left that a pivot fits). The caller's org only.
create function private.knowledge_assign_vector_cells(p_org_id uuid, p_model text, p_batch int)
returns int
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v_length int;
  v_assigned int;
begin
  if p_org_id is null or p_org_id is distinct from private.worker_org_id() then
    raise exception 'only the org''s worker assigns its vector cells' using errcode = '42501';
  end if;
  select length(k.pivot) into v_length from public.knowledge_vector_cells k where k.org_id = p_org_id and k.embedding_model = p_model limit 1;
  if v_length is null then
    return 0;
  end if;
  with todo as (
    select c.id, c.embedding_sketch
      from public.knowledge_chunks c
     where c.org_id = p_org_id and c.embedding_model = p_model and c.embedding_sketch is not null
       and c.embedding_cell is null and length(c.embedding_sketch) = v_length
     limit greatest(p_batch, 1)
       for update skip locked
  )
  update public.knowledge_chunks c
     set embedding_cell = private.knowledge_nearest_cell(p_org_id, p_model, todo.embedding_sketch)
    from todo
   where c.id = todo.id and c.org_id = p_org_id;
  get diagnostics v_assigned = row_count;
  return v_assigned;
end
$$;

revoke execute on function private.knowledge_nearest_cell(uuid, text, bit varying) from public, anon;
revoke execute on function private.knowledge_chunk_cell() from public, anon;
revoke execute on function private.knowledge_draw_vector_cells(uuid, text) from public, anon;
revoke execute on function private.knowledge_assign_vector_cells(uuid, text, int) from public, anon;
grant execute on function private.knowledge_nearest_cell(uuid, text, bit varying) to authenticated, service_role;
grant execute on function private.knowledge_draw_vector_cells(uuid, text) to authenticated;
grant execute on function private.knowledge_assign_vector_cells(uuid, text, int) to authenticated;

-- As in 20261210300100, with the vector list read from the 16 cells nearest the query's sketch
-- and the chunks without a cell (all of them, for an org whose cells are not drawn yet).
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
  v_sketch bit varying;
  v_probe int[];
begin
  if p_org_id is null or p_org_id not in (select private.org_ids_for('member')) then
    return;
  end if;
  v_words := private.knowledge_fulltext_list(p_org_id, p_words, 50);
  v_terms := private.knowledge_fulltext_list(p_org_id, (select string_agg(distinct t.term, ' ') from private.knowledge_similar_terms(p_org_id, p_compacts, 3) t), 50);
  if p_embedding is not null and p_model is not null then
    v_sketch := private.embedding_sketch(p_embedding);
    v_probe := array(
      select k.cell from public.knowledge_vector_cells k
       where k.org_id = p_org_id and k.embedding_model = p_model and length(k.pivot) = length(v_sketch)
       order by bit_count(k.pivot # v_sketch), k.cell
       limit 16);
    v_vector := array(
      with candidates as (
        select c.id, c.embedding_sketch
          from public.knowledge_chunks c
         where c.org_id = p_org_id and c.embedding_model = p_model and c.embedding_sketch is not null and c.embedding_cell = any(v_probe)
        union all
        select c.id, c.embedding_sketch
          from public.knowledge_chunks c
         where c.org_id = p_org_id and c.embedding_model = p_model and c.embedding_sketch is not null and c.embedding_cell is null
      ), near as (
        select n.id
          from candidates n
         -- A model whose dimensions changed under the same name sorts last instead of failing the XOR.
         order by case when length(n.embedding_sketch) = length(v_sketch) then bit_count(n.embedding_sketch # v_sketch) end nulls last, n.id
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
