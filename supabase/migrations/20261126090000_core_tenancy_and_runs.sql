-- Core tenancy: organizations and their members, agents, agent runs and each run's event log.
--
-- Every table is under forced row-level security. Policies are written for the role
-- `authenticated` and read the principal from transaction-local JWT claims built by the server
-- (lib/principal.ts): a `user` (sub, email) is scoped by membership, a `worker` (org_id) acts for
-- exactly one organization. `service_role` bypasses RLS and is for migrations, seeds and
-- operator tooling only.

-- Private helpers ---------------------------------------------------------------------------------
-- Not exposed through any API. Policies call these helpers while evaluating as `authenticated`,
-- so that role needs usage on the schema and execute on the helpers, and nobody else does.

create schema if not exists private;
revoke all on schema private from public;
grant usage on schema private to authenticated;

-- Tables --------------------------------------------------------------------------------------------

create table public.organizations (
  id uuid primary key default gen_random_uuid(),
  name text not null check (char_length(name) between 1 and 200),
  created_at timestamptz not null default now()
);

create table public.organization_members (
  org_id uuid not null references public.organizations (id) on delete cascade,
  -- No foreign key to auth.users: plain Postgres has no such table and this migration must apply
  -- unchanged there too. User ids are the `sub` of verified Supabase JWTs.
  user_id uuid not null,
  role text not null check (role in ('owner', 'admin', 'member')),
  created_at timestamptz not null default now(),
  primary key (org_id, user_id)
);

-- The policy helper looks memberships up by user.
create index organization_members_user_id_org_id_idx on public.organization_members (user_id, org_id);

create table public.agents (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 200),
  model text not null check (char_length(model) between 1 and 200),
  instructions text not null default '' check (char_length(instructions) <= 100000),
  temperature numeric(3, 2) not null default 0.7 check (temperature between 0 and 2),
  max_output_tokens int not null default 1024 check (max_output_tokens between 1 and 200000),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- Target of agent_runs' composite foreign key; its index (leading org_id) also serves the
  -- policies' org_id filter, so no separate org_id index.
  unique (org_id, id)
);

create table public.agent_runs (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  agent_id uuid not null,
  status text not null default 'queued'
    check (status in ('queued', 'running', 'completed', 'failed', 'cancelled')),
  input text not null check (char_length(input) <= 100000),
  output text,
  error jsonb,
  idempotency_key text check (char_length(idempotency_key) between 1 and 200),
  -- The Temporal workflow id is a business key derived from the run, never chosen by a client,
  -- so at most one workflow can ever run for a row.
  workflow_id text not null generated always as ('agent-run:' || id::text) stored,
  input_tokens int not null default 0 check (input_tokens >= 0),
  output_tokens int not null default 0 check (output_tokens >= 0),
  created_by uuid,
  created_at timestamptz not null default now(),
  started_at timestamptz,
  completed_at timestamptz,
  updated_at timestamptz not null default now(),
  unique (org_id, id),
  -- Composite key: a run's org is always its agent's org, whatever org_id a writer supplies.
  foreign key (org_id, agent_id) references public.agents (org_id, id) on delete cascade
);

create unique index agent_runs_org_id_idempotency_key_idx
  on public.agent_runs (org_id, idempotency_key) where idempotency_key is not null;
create index agent_runs_org_id_created_at_idx on public.agent_runs (org_id, created_at desc);
-- Serves the cascade from agents and listing an agent's runs.
create index agent_runs_org_id_agent_id_idx on public.agent_runs (org_id, agent_id);

create table public.run_events (
  id bigint generated always as identity primary key,
  org_id uuid not null,
  run_id uuid not null,
  seq int not null check (seq >= 1),
  type text not null check (char_length(type) between 1 and 100),
  payload jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  unique (run_id, seq),
  foreign key (org_id, run_id) references public.agent_runs (org_id, id) on delete cascade
);

-- Serves the policies' org_id filter and the cascade from agent_runs.
create index run_events_org_id_run_id_idx on public.run_events (org_id, run_id);

-- updated_at ------------------------------------------------------------------------------------------

create function private.touch_updated_at() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end
$$;

revoke execute on function private.touch_updated_at() from public;

create trigger agents_touch_updated_at
  before update on public.agents
  for each row execute function private.touch_updated_at();

create trigger agent_runs_touch_updated_at
  before update on public.agent_runs
  for each row execute function private.touch_updated_at();

-- Policy helpers ------------------------------------------------------------------------------------
-- security definer so that reading organization_members inside a policy is not itself subject
-- to organization_members' policy (which would recurse). The owner is the migration role,
-- which bypasses RLS (superuser on plain Postgres, `postgres` with bypassrls on Supabase).
-- search_path is pinned empty so nothing a caller creates can shadow the objects used here.

-- Organizations the current principal acts for with at least `min_role`
-- (member < admin < owner). A user gets the orgs they belong to with that rank; a worker gets
-- its one org, and only for 'member' rights: workers never administer. Unknown principals and
-- unknown role names match nothing.
create function private.org_ids_for(min_role text)
returns setof uuid
language sql
stable
security definer
-- A principal acts for a handful of orgs, not the default estimate of 1000.
rows 10
set search_path = ''
as $$
  with ranks (role, rank) as (
    values ('member', 1), ('admin', 2), ('owner', 3)
  )
  select m.org_id
  from public.organization_members m
  join ranks held on held.role = m.role
  join ranks wanted on wanted.role = min_role
  where (select auth.jwt() ->> 'principal') = 'user'
    and m.user_id = (select auth.uid())
    and held.rank >= wanted.rank
  union all
  select (select auth.jwt() ->> 'org_id')::uuid
  where (select auth.jwt() ->> 'principal') = 'worker'
    and min_role = 'member'
$$;

-- The org a worker principal acts for; null for every other principal.
create function private.worker_org_id()
returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select case
    when (select auth.jwt() ->> 'principal') = 'worker' then (select auth.jwt() ->> 'org_id')::uuid
  end
$$;

revoke execute on function private.org_ids_for(text) from public, anon;
revoke execute on function private.worker_org_id() from public, anon;
grant execute on function private.org_ids_for(text) to authenticated;
grant execute on function private.worker_org_id() to authenticated;

-- Row-level security --------------------------------------------------------------------------------
-- FORCE so that the table owner is subject to the policies too; only superusers and bypassrls
-- roles (service_role) skip them.

alter table public.organizations enable row level security;
alter table public.organizations force row level security;
alter table public.organization_members enable row level security;
alter table public.organization_members force row level security;
alter table public.agents enable row level security;
alter table public.agents force row level security;
alter table public.agent_runs enable row level security;
alter table public.agent_runs force row level security;
alter table public.run_events enable row level security;
alter table public.run_events force row level security;

-- Privileges ------------------------------------------------------------------------------------------
-- Revoked first because Supabase's default privileges grant everything in public to anon and
-- authenticated. Then `authenticated` gets exactly what its policies allow, column by column
-- where a write must not touch keys, ownership or server-managed columns.

revoke all on
  public.organizations, public.organization_members, public.agents, public.agent_runs, public.run_events
  from public, anon, authenticated;
revoke all on sequence public.run_events_id_seq from public, anon, authenticated;

grant all on
  public.organizations, public.organization_members, public.agents, public.agent_runs, public.run_events
  to service_role;
grant all on sequence public.run_events_id_seq to service_role;

-- Organization and membership writes arrive in a later migration; until then only service_role writes them.
grant select on public.organizations to authenticated;
grant select on public.organization_members to authenticated;

grant select, delete on public.agents to authenticated;
grant insert (org_id, name, model, instructions, temperature, max_output_tokens) on public.agents to authenticated;
grant update (name, model, instructions, temperature, max_output_tokens) on public.agents to authenticated;

-- Users create runs (with their input); workers move them through their lifecycle.
grant select on public.agent_runs to authenticated;
grant insert (org_id, agent_id, input, idempotency_key, created_by) on public.agent_runs to authenticated;
grant update (status, output, error, input_tokens, output_tokens, started_at, completed_at)
  on public.agent_runs to authenticated;

-- Append-only: no update or delete for anyone but service_role.
grant select on public.run_events to authenticated;
grant insert (org_id, run_id, seq, type, payload) on public.run_events to authenticated;

-- Policies ------------------------------------------------------------------------------------------
-- Helpers are called as `(select ...)` so they run once per statement (an InitPlan), not per row.

create policy organizations_select_member on public.organizations
  for select to authenticated
  using (id in (select private.org_ids_for('member')));

create policy organization_members_select_member on public.organization_members
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')));

create policy agents_select_member on public.agents
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')));

create policy agents_insert_admin on public.agents
  for insert to authenticated
  with check (org_id in (select private.org_ids_for('admin')));

create policy agents_update_admin on public.agents
  for update to authenticated
  using (org_id in (select private.org_ids_for('admin')))
  with check (org_id in (select private.org_ids_for('admin')));

create policy agents_delete_admin on public.agents
  for delete to authenticated
  using (org_id in (select private.org_ids_for('admin')));

create policy agent_runs_select_member on public.agent_runs
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')));

-- Only users start runs, and only in their own name: a worker has no auth.uid(), so
-- created_by = null never passes.
create policy agent_runs_insert_member on public.agent_runs
  for insert to authenticated
  with check (
    org_id in (select private.org_ids_for('member'))
    and created_by = (select auth.uid())
  );

create policy agent_runs_update_worker on public.agent_runs
  for update to authenticated
  using (org_id = (select private.worker_org_id()))
  with check (org_id = (select private.worker_org_id()));

create policy run_events_select_member on public.run_events
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')));

create policy run_events_insert_worker on public.run_events
  for insert to authenticated
  with check (org_id = (select private.worker_org_id()));
