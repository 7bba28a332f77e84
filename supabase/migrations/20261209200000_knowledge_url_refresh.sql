-- Web pages in the knowledge base can be re-fetched on a Temporal Schedule (issue 15): the
-- schedule `knowledge-refresh:<documentId>` starts the knowledgeRefresh workflow every
-- `refresh_every`; it sends a conditional request (the validators below) and re-indexes only
-- when the page's text changed (its hash below), so an unchanged page costs no embedding work.
-- The row holds the interval asked for; the API makes Temporal's schedule follow it.

alter table public.knowledge_documents
  add column refresh_every text check (refresh_every in ('1h', '6h', '1d', '7d')),
  -- Only web pages are re-fetched.
  add constraint knowledge_documents_refresh_url_only check (refresh_every is null or source_kind = 'url'),
  -- sha256 of the extracted text of the current revision (hex); a re-fetch compares it.
  add column content_sha256 text check (content_sha256 ~ '^[0-9a-f]{64}$'),
  -- The page's validators from the last fetch, sent back as If-None-Match / If-Modified-Since.
  add column source_etag text check (char_length(source_etag) <= 500),
  add column source_last_modified text check (char_length(source_last_modified) <= 100),
  -- The last re-fetch: when, what came of it, and why it failed (the old chunks stay searchable).
  add column last_fetched_at timestamptz,
  add column last_fetch_outcome text check (last_fetch_outcome in ('changed', 'unchanged', 'failed')),
  add column last_fetch_error text check (char_length(last_fetch_error) <= 1000);

-- Admins choose the interval (on create, replace and PATCH); the org's worker records fetches.
grant insert (refresh_every) on public.knowledge_documents to authenticated;
grant update (refresh_every, content_sha256, source_etag, source_last_modified, last_fetched_at, last_fetch_outcome, last_fetch_error)
  on public.knowledge_documents to authenticated;

