-- Stage triggers fire once per lead and stage within a cooldown.
--
-- A lead that bounces between stages, or a CRM that reports one move twice (Kommo sends both a
-- `status` and an `update` event; HubSpot a `creation` and a `propertyChange`), must not start a
-- second run for the same lead and stage minutes after the first. The webhook intake claims a
-- firing here before it starts a run: the claim succeeds when there is no firing for
-- (agent, connection, lead, stage), when the last one is older than the trigger's cooldown, or
-- when it was made by the same delivery (a retried delivery must still start the run its first
-- attempt claimed, which the run's idempotency key then dedupes).

create table public.agent_trigger_firings (
  org_id uuid not null,
  agent_id uuid not null,
  connection_id uuid not null,
  lead_external_id text not null check (char_length(lead_external_id) between 1 and 100),
  stage_id text not null check (char_length(stage_id) between 1 and 100),
  -- Derived from the webhook delivery (never its content).
  delivery_id text not null check (char_length(delivery_id) between 1 and 100),
  fired_at timestamptz not null default now(),
  primary key (agent_id, connection_id, lead_external_id, stage_id),
  foreign key (org_id, agent_id) references public.agents (org_id, id) on delete cascade,
  foreign key (org_id, connection_id) references public.crm_connections (org_id, id) on delete cascade
);
-- Serves the cascades from agents and crm_connections.
create index agent_trigger_firings_org_id_agent_id_idx on public.agent_trigger_firings (org_id, agent_id);
create index agent_trigger_firings_org_id_connection_id_idx on public.agent_trigger_firings (org_id, connection_id);

alter table public.agent_trigger_firings enable row level security;
alter table public.agent_trigger_firings force row level security;

revoke all on public.agent_trigger_firings from public, anon, authenticated;
grant all on public.agent_trigger_firings to service_role;
grant select on public.agent_trigger_firings to authenticated;
grant insert (org_id, agent_id, connection_id, lead_external_id, stage_id, delivery_id) on public.agent_trigger_firings to authenticated;
grant update (delivery_id, fired_at) on public.agent_trigger_firings to authenticated;

-- Admins can see when their triggers last fired; only the org's worker (the webhook intake) claims.
create policy agent_trigger_firings_select_admin_or_worker on public.agent_trigger_firings
  for select to authenticated
  using (org_id in (select private.org_ids_for('admin')) or org_id = (select private.worker_org_id()));
create policy agent_trigger_firings_insert_worker on public.agent_trigger_firings
  for insert to authenticated with check (org_id = (select private.worker_org_id()));
create policy agent_trigger_firings_update_worker on public.agent_trigger_firings
  for update to authenticated
  using (org_id = (select private.worker_org_id())) with check (org_id = (select private.worker_org_id()));

-- Triggers act on the agent's CRM connection; without one they could never fire. The API refuses
-- such a configuration, and when the connection is deleted (the foreign key sets
-- crm_connection_id to null) the agent's triggers go with it.
update public.agents set triggers = '[]'::jsonb where crm_connection_id is null and triggers <> '[]'::jsonb;

create function private.clear_triggers_without_connection() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.crm_connection_id is null then
    new.triggers := '[]'::jsonb;
  end if;
  return new;
end
$$;
revoke execute on function private.clear_triggers_without_connection() from public;

create trigger agents_clear_triggers_without_connection
  before update of crm_connection_id on public.agents
  for each row when (new.crm_connection_id is null and new.triggers <> '[]'::jsonb)
  execute function private.clear_triggers_without_connection();

alter table public.agents
  add constraint agents_triggers_need_connection_check check (crm_connection_id is not null or triggers = '[]'::jsonb);
