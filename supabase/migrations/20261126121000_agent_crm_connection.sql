-- Agents bound to a CRM connection: the CRM tools (crm_search_records, crm_get_record,
-- crm_add_note, crm_create_task, crm_update_stage) act on this connection and nothing else.
-- The composite foreign key makes a connection of another org unreferenceable; deleting the
-- connection unbinds its agents (their CRM tools then answer "not connected").

alter table public.agents
  add column crm_connection_id uuid,
  add constraint agents_crm_connection_fkey foreign key (org_id, crm_connection_id)
    references public.crm_connections (org_id, id) on delete set null (crm_connection_id);

-- Serves the foreign key's cascade from crm_connections.
create index agents_org_id_crm_connection_id_idx on public.agents (org_id, crm_connection_id)
  where crm_connection_id is not null;

grant insert (crm_connection_id) on public.agents to authenticated;
grant update (crm_connection_id) on public.agents to authenticated;
