-- Memory per lead (docs/agent-runtime.md "Memory per lead"), and erasing a lead (docs/crm.md
-- "Erasing a lead").
--
-- When a conversation with a CRM lead ends, the worker has the model write a short summary of it
-- and stores it here; the next conversation of any of the org's agents with that lead starts with
-- the latest summaries. One row per ended conversation (source_run_id is unique, so a retried
-- activity stores one). The lead is (connection, external id), as its conversation's thread key
-- says: `crm:<connectionId>:<leadExternalId>` (lib/agent-triggers.ts leadThreadKey).

create table public.lead_memories (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  connection_id uuid not null,
  lead_external_id text not null check (char_length(lead_external_id) between 1 and 100),
  thread_key text generated always as ('crm:' || connection_id::text || ':' || lead_external_id) stored,
  summary text not null check (char_length(summary) between 1 and 4000),
  source_run_id uuid not null unique,
  agent_id uuid,
  input_tokens integer not null default 0 check (input_tokens >= 0),
  output_tokens integer not null default 0 check (output_tokens >= 0),
  created_at timestamptz not null default now(),
  foreign key (org_id, connection_id) references public.crm_connections (org_id, id) on delete cascade,
  foreign key (org_id, source_run_id) references public.agent_runs (org_id, id) on delete cascade
);
create index lead_memories_org_id_thread_key_idx on public.lead_memories (org_id, thread_key, created_at desc);
create index lead_memories_org_id_connection_id_lead_idx on public.lead_memories (org_id, connection_id, lead_external_id);

alter table public.lead_memories enable row level security;
alter table public.lead_memories force row level security;

revoke all on public.lead_memories from public, anon, authenticated;
grant all on public.lead_memories to service_role;
grant select, delete on public.lead_memories to authenticated;
grant insert (org_id, connection_id, lead_external_id, summary, source_run_id, agent_id, input_tokens, output_tokens) on public.lead_memories to authenticated;

-- The org's people read what the agents remember; the worker writes it; admins erase it.
create policy lead_memories_select_member_or_worker on public.lead_memories
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')) or org_id = (select private.worker_org_id()));
create policy lead_memories_insert_worker on public.lead_memories
  for insert to authenticated with check (org_id = (select private.worker_org_id()));
create policy lead_memories_delete_admin on public.lead_memories
  for delete to authenticated using (org_id in (select private.org_ids_for('admin')));

-- Erasing everything held about a lead, for data-protection requests, in one transaction: its
-- conversations (runs with the lead's thread key, and with them their events, messages, reply
-- ledger, approvals, tool results), its memories, its synced record (the deal), the webhook deliveries that
-- carried its messages, its trigger firings, and the org events of its conversations. Runs as
-- the definer because no application role may delete runs or records row by row; it checks
-- the caller is an admin of the org itself and refuses while a conversation with the lead is
-- still open (its workflow would write again): cancel it first. The audit entry commits with it.
create function private.erase_lead(target_org uuid, target_connection uuid, target_lead text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  key text := 'crm:' || target_connection::text || ':' || target_lead;
  run_ids uuid[];
  counts jsonb;
  n_memories integer;
  n_records integer;
  n_deliveries integer;
  n_firings integer;
  n_events integer;
  n_messages integer;
begin
  if target_org not in (select private.org_ids_for('admin')) then
    raise exception 'only an admin of the organization may erase a lead' using errcode = '42501';
  end if;
  if not exists (select 1 from public.crm_connections where id = target_connection and org_id = target_org) then
    return null;
  end if;
  if exists (select 1 from public.agent_runs where org_id = target_org and thread_key = key and status not in ('completed', 'failed', 'cancelled')) then
    raise exception 'a conversation with this lead is still open' using errcode = '55006';
  end if;
  select coalesce(array_agg(id), '{}') into run_ids from public.agent_runs where org_id = target_org and thread_key = key;
  select count(*) into n_messages from public.conversation_messages where org_id = target_org and run_id = any (run_ids);
  delete from public.org_events where org_id = target_org and payload->>'runId' = any (select unnest(run_ids)::text);
  get diagnostics n_events = row_count;
  delete from public.lead_memories where org_id = target_org and connection_id = target_connection and lead_external_id = target_lead;
  get diagnostics n_memories = row_count;
  -- Tool results of its conversations (the ledger would only lose its run id otherwise).
  delete from public.effect_ledger where org_id = target_org and run_id = any (run_ids);
  delete from public.agent_runs where org_id = target_org and id = any (run_ids);
  delete from public.crm_records where org_id = target_org and connection_id = target_connection and object_type = 'deals' and external_id = target_lead;
  get diagnostics n_records = row_count;
  delete from public.crm_webhook_deliveries where org_id = target_org and connection_id = target_connection and object_type = 'deals' and external_id = target_lead;
  get diagnostics n_deliveries = row_count;
  delete from public.agent_trigger_firings where org_id = target_org and connection_id = target_connection and lead_external_id = target_lead;
  get diagnostics n_firings = row_count;
  counts := jsonb_build_object(
    'conversations', cardinality(run_ids), 'messages', n_messages, 'memories', n_memories, 'records', n_records,
    'webhookDeliveries', n_deliveries, 'triggerFirings', n_firings, 'orgEvents', n_events);
  perform private.append_audit(target_org, 'lead.erased', 'crm_lead', target_connection::text || ':' || target_lead, counts);
  return counts;
end
$$;
revoke execute on function private.erase_lead(uuid, uuid, text) from public, anon;
grant execute on function private.erase_lead(uuid, uuid, text) to authenticated;
