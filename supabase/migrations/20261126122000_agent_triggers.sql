-- Agent triggers: what CRM webhook events start or message an agent's runs.
--
-- Stored as a jsonb array on the agent rather than a table of their own: a trigger belongs to
-- exactly one agent, acts on the agent's own CRM connection (agents.crm_connection_id), is read
-- and written with the agent (same policies: admins write, members and the org's worker read)
-- and there are a handful per agent. Shape (validated by the API):
--   [{"event": "lead_stage_entered", "stageId": "…", "pipelineId": "…"?}, {"event": "incoming_message"}]
-- The webhook intake finds the triggered agents of a connection with a containment match.

alter table public.agents
  add column triggers jsonb not null default '[]'::jsonb
    check (jsonb_typeof(triggers) = 'array' and jsonb_array_length(triggers) <= 20);

grant insert (triggers) on public.agents to authenticated;
grant update (triggers) on public.agents to authenticated;

-- The lookup filters on (org_id, crm_connection_id), served by agents_org_id_crm_connection_id_idx.

-- Runs started by a CRM webhook ----------------------------------------------------------------------
-- The webhook intake acts as the worker of the connection's org. A worker may create a run only
-- without a person behind it (created_by null) and only under the webhook namespaces: a
-- delivery-derived idempotency key (`webhook:…`) for a triggered run, or a CRM thread key
-- (`crm:…`) for a lead's conversation. Users and API keys keep the policy they had.

create policy agent_runs_insert_worker on public.agent_runs
  for insert to authenticated
  with check (
    org_id = (select private.worker_org_id())
    and created_by is null
    and (idempotency_key like 'webhook:%' or thread_key like 'crm:%')
  );

-- Conversation messages from the CRM --------------------------------------------------------------
-- A lead's incoming message has no user author: author is null and source 'crm_webhook'. Only
-- the org's worker may write such a row; people keep writing in their own name with source 'user'
-- (the existing policy now also requires source = 'user', so nobody can forge a CRM message).

alter table public.conversation_messages
  alter column author drop not null,
  add column source text not null default 'user' check (source in ('user', 'crm_webhook')),
  add constraint conversation_messages_author_source_check
    check ((source = 'user' and author is not null) or (source = 'crm_webhook' and author is null));

-- The webhook event a CRM message came from (delivery-derived): a retried delivery finds the
-- message it already wrote instead of writing it twice.
alter table public.conversation_messages
  add column source_key text check (char_length(source_key) between 1 and 200),
  add constraint conversation_messages_source_key_source_check check (source_key is null or source = 'crm_webhook');

create unique index conversation_messages_org_id_source_key_idx
  on public.conversation_messages (org_id, source_key) where source_key is not null;

grant insert (source, source_key) on public.conversation_messages to authenticated;

drop policy conversation_messages_insert_member on public.conversation_messages;

create policy conversation_messages_insert_member on public.conversation_messages
  for insert to authenticated
  with check (
    org_id in (select private.org_ids_for('member'))
    and source = 'user'
    and author = (select auth.uid())
  );

create policy conversation_messages_insert_worker on public.conversation_messages
  for insert to authenticated
  with check (
    org_id = (select private.worker_org_id())
    and source = 'crm_webhook'
    and author is null
    and run_id in (select r.id from public.agent_runs r where r.org_id = conversation_messages.org_id and r.thread_key like 'crm:%')
  );
