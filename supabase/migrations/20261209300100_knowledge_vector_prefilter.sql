-- Vector search without a linear scan of exact dot products (issue 15, item 3). Our machines have
-- no pgvector, and a dot product in SQL (sum over unnest of two real[]) costs seconds over 100k
-- chunks. Each embedding gets a binary sketch: one bit per dimension, set where the component
-- is above the vector's mean (binary quantisation; centring on the mean keeps the bits
-- informative for embeddings whose components are all positive, like the fake LLM's). Search
-- (activities/knowledge/search.ts) ranks the org's chunks by Hamming distance between sketches,
-- read from an index-only scan, keeps the closest few hundred, adds the lexical candidates, and
-- computes exact dot products over those only. Where pgvector exists, an HNSW index replaces
-- this (docs/knowledge.md).

create or replace function private.embedding_sketch(p_embedding real[])
returns bit varying
language sql
immutable
strict
parallel safe
set search_path = ''
as $$
  select string_agg(case when v.x > m.mean then '1' else '0' end, '' order by v.i)::bit varying
    from unnest(p_embedding) with ordinality as v(x, i),
         (select avg(y) as mean from unnest(p_embedding) as y) m
$$;
-- Ingestion (the org's worker) evaluates the generated column; search sketches the query.
revoke execute on function private.embedding_sketch(real[]) from public, anon;
grant execute on function private.embedding_sketch(real[]) to authenticated;

alter table public.knowledge_chunks
  add column embedding_sketch bit varying generated always as (private.embedding_sketch(embedding)) stored;

-- The prefilter reads (org, model, id, sketch) from the index alone: a 100k-chunk org's sketches of a
-- 64-dimension model are about 4 MB of index, of a 1,536-dimension model about 22 MB.
create index knowledge_chunks_org_model_sketch_idx on public.knowledge_chunks (org_id, embedding_model) include (id, embedding_sketch)
  where embedding_sketch is not null;
