-- The conversations list (GET /v1/orgs/:orgId/conversations): an org's threads newest first,
-- keyset-paginated on (created_at, id), each with its latest message.

-- Only runs with a thread key are conversations; task runs stay out of this index.
create index agent_runs_org_id_conversations_idx
  on public.agent_runs (org_id, created_at desc, id desc)
  where thread_key is not null;

-- A thread's latest person's message is one backward scan; this index also serves every lookup
-- the (org_id, run_id) index did, so that one goes.
create index conversation_messages_org_id_run_id_created_at_idx
  on public.conversation_messages (org_id, run_id, created_at desc);
drop index public.conversation_messages_org_id_run_id_idx;
