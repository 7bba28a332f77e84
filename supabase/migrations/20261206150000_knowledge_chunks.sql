-- Knowledge retrieval that fits the language, and ingestion as a workflow (issue 15).
--
-- A document (pasted text, an uploaded file or a web page) is ingested by the knowledgeIngest
-- workflow into chunks: overlapping passages with a detected language each. Search ranks chunks,
-- not documents, by three signals fused with reciprocal rank fusion (activities/knowledge/search.ts):
--   * full-text search with the stemming of the chunk's language ('russian', 'english', 'simple'),
--   * pg_trgm similarity against the org's vocabulary (knowledge_terms), which turns misspelt
--     words and product codes written differently ('KX2040' for 'KX-2040') into the terms that
--     occur, as the PostgreSQL manual suggests for trigram + full-text search,
--   * cosine similarity of embeddings, where the org has an embedding model.
-- Embeddings are real[] (unit length, so cosine is a dot product): exact search works on plain
-- Postgres without pgvector. docs/knowledge.md shows the pgvector column and index to add where
-- the extension exists (Supabase).

-- Supabase installs extensions into the `extensions` schema; plain Postgres gets the same layout.
create schema if not exists extensions;
grant usage on schema extensions to authenticated, service_role;
create extension if not exists pg_trgm with schema extensions;

-- Documents: where they came from and how far their ingestion got ----------------------------------

alter table public.knowledge_documents
  -- Extracted text can be long (a 300-page PDF); chunks carry the search, not the document.
  drop constraint knowledge_documents_body_check,
  add constraint knowledge_documents_body_check check (char_length(body) <= 2000000),
  -- The list filter's tsvector (agents search chunks instead) reads the first 200,000
  -- characters, as before, so a long extracted text cannot exceed tsvector's 1 MB limit.
  drop column search,
  add column search tsvector not null generated always as (
    setweight(to_tsvector('simple', title), 'A') || setweight(to_tsvector('simple', left(body, 200000)), 'B')
  ) stored,
  add column source_kind text not null default 'text' check (source_kind in ('text', 'file', 'url')),
  add column source_url text check (char_length(source_url) <= 2000),
  add column file_name text check (char_length(file_name) <= 255),
  add column media_type text check (char_length(media_type) <= 100),
  add column byte_size bigint check (byte_size >= 0),
  -- pending → processing → ready | failed; every (re)upload starts again at pending.
  add column status text not null default 'pending' check (status in ('pending', 'processing', 'ready', 'failed')),
  add column failure_reason text check (char_length(failure_reason) <= 1000),
  -- Bumped by each upload; an ingestion writes its chunks only while its revision is current.
  add column revision int not null default 1 check (revision >= 1),
  -- Progress of the current ingestion, for the API.
  add column chunks_total int check (chunks_total >= 0),
  add column chunks_done int not null default 0 check (chunks_done >= 0),
  add column page_count int check (page_count >= 0),
  add column language text check (language in ('ru', 'en', 'simple')),
  add column ingested_at timestamptz;

create index knowledge_documents_search_idx on public.knowledge_documents using gin (search);

-- The uploaded bytes, kept so that ingestion (and a retry of it) reads them from here, not from
-- the request that brought them.
create table public.knowledge_document_files (
  document_id uuid primary key,
  org_id uuid not null,
  revision int not null check (revision >= 1),
  content bytea not null check (octet_length(content) <= 26214400),
  sha256 text not null check (sha256 ~ '^[0-9a-f]{64}$'),
  created_at timestamptz not null default now(),
  foreign key (org_id, document_id) references public.knowledge_documents (org_id, id) on delete cascade
);
create index knowledge_document_files_org_id_idx on public.knowledge_document_files (org_id);

-- Chunks ------------------------------------------------------------------------------------------------

create table public.knowledge_chunks (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  document_id uuid not null,
  position int not null check (position >= 0),
  -- The document title (and section heading when known): weighted above the passage.
  heading text not null default '' check (char_length(heading) <= 1000),
  passage text not null check (char_length(passage) between 1 and 8000),
  -- Detected per chunk (activities/knowledge/language.ts); picks the text search configuration.
  language text not null check (language in ('ru', 'en', 'simple')),
  -- Built by the writer from the normalised text (activities/knowledge/text.ts: lower case,
  -- non-ASCII punctuation removed) with the configuration of `language`. Not a generated column:
  -- lower-casing Cyrillic in SQL depends on the database's LC_CTYPE, and clusters initialised
  -- with the C locale (ours) leave «Тариф» capitalised, so it would never meet «тариф».
  search tsvector not null,
  -- Unit-length embedding and the model that made it; null where the org has no embedding model.
  embedding real[] check (embedding is null or cardinality(embedding) between 1 and 4096),
  embedding_model text check (char_length(embedding_model) <= 200),
  created_at timestamptz not null default now(),
  unique (document_id, position),
  foreign key (org_id, document_id) references public.knowledge_documents (org_id, id) on delete cascade
);
create index knowledge_chunks_org_id_idx on public.knowledge_chunks (org_id, document_id);
create index knowledge_chunks_search_idx on public.knowledge_chunks using gin (search);

-- The org's vocabulary: every distinct word and code of a document, and its compact form that
-- trigram similarity compares: lower case, separators removed, Cyrillic transliterated to Latin
-- (pg_trgm takes only ASCII letters into trigrams under the C locale, so «тариф» is compared as
-- 'tarif'; this also lets 'tarif' typed in Latin letters find «тариф»).
create table public.knowledge_terms (
  org_id uuid not null,
  document_id uuid not null,
  term text not null check (char_length(term) between 1 and 100),
  compact text not null check (char_length(compact) between 1 and 100),
  primary key (document_id, term),
  foreign key (org_id, document_id) references public.knowledge_documents (org_id, id) on delete cascade
);
create index knowledge_terms_org_id_idx on public.knowledge_terms (org_id);
create index knowledge_terms_compact_trgm_idx on public.knowledge_terms using gin (compact extensions.gin_trgm_ops);

-- Row-level security: members read; admins upload (documents, files); the org's worker writes
-- what ingestion derives (status, text, chunks, vocabulary). ------------------------------------------

alter table public.knowledge_document_files enable row level security;
alter table public.knowledge_document_files force row level security;
alter table public.knowledge_chunks enable row level security;
alter table public.knowledge_chunks force row level security;
alter table public.knowledge_terms enable row level security;
alter table public.knowledge_terms force row level security;

revoke all on public.knowledge_document_files, public.knowledge_chunks, public.knowledge_terms from public, anon, authenticated;
grant all on public.knowledge_document_files, public.knowledge_chunks, public.knowledge_terms to service_role;

grant insert (source_kind, source_url, file_name, media_type, byte_size, status, revision) on public.knowledge_documents to authenticated;
grant update (body, source_url, file_name, media_type, byte_size, status, failure_reason, revision, chunks_total, chunks_done, page_count, language, ingested_at)
  on public.knowledge_documents to authenticated;

grant select, delete on public.knowledge_document_files to authenticated;
grant insert (document_id, org_id, revision, content, sha256) on public.knowledge_document_files to authenticated;
grant update (revision, content, sha256) on public.knowledge_document_files to authenticated;

grant select, delete on public.knowledge_chunks to authenticated;
grant insert (org_id, document_id, position, heading, passage, language, search, embedding, embedding_model) on public.knowledge_chunks to authenticated;

grant select, delete on public.knowledge_terms to authenticated;
grant insert (org_id, document_id, term, compact) on public.knowledge_terms to authenticated;

-- Ingestion runs as the org's worker: it records status, text and progress on the document.
drop policy knowledge_documents_update_admin on public.knowledge_documents;
create policy knowledge_documents_update_admin_or_worker on public.knowledge_documents
  for update to authenticated
  using (org_id in (select private.org_ids_for('admin')) or org_id = (select private.worker_org_id()))
  with check (org_id in (select private.org_ids_for('admin')) or org_id = (select private.worker_org_id()));

create policy knowledge_document_files_select_member on public.knowledge_document_files
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')));
create policy knowledge_document_files_insert_admin on public.knowledge_document_files
  for insert to authenticated
  with check (org_id in (select private.org_ids_for('admin')));
create policy knowledge_document_files_update_admin on public.knowledge_document_files
  for update to authenticated
  using (org_id in (select private.org_ids_for('admin')))
  with check (org_id in (select private.org_ids_for('admin')));
create policy knowledge_document_files_delete_admin on public.knowledge_document_files
  for delete to authenticated
  using (org_id in (select private.org_ids_for('admin')));

create policy knowledge_chunks_select_member on public.knowledge_chunks
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')));
create policy knowledge_chunks_insert_worker on public.knowledge_chunks
  for insert to authenticated
  with check (org_id = (select private.worker_org_id()));
create policy knowledge_chunks_delete_worker on public.knowledge_chunks
  for delete to authenticated
  using (org_id = (select private.worker_org_id()));

create policy knowledge_terms_select_member on public.knowledge_terms
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')));
create policy knowledge_terms_insert_worker on public.knowledge_terms
  for insert to authenticated
  with check (org_id = (select private.worker_org_id()));
create policy knowledge_terms_delete_worker on public.knowledge_terms
  for delete to authenticated
  using (org_id = (select private.worker_org_id()));
