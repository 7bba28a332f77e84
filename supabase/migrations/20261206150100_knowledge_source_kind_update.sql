-- Replacing a document's content (PUT /v1/orgs/:orgId/knowledge/:documentId) can change what
-- kind of source it is (pasted text → uploaded file → web page); admins need that column too.
grant update (source_kind) on public.knowledge_documents to authenticated;
