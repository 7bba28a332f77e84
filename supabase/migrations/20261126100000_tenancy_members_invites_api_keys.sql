-- Tenancy: organization and membership writes, invites, org API keys and the audit log.
--
-- Who may write what is decided here, by policies, not only by the API: the API adds friendlier
-- answers (403 for a member on an admin route) on top. Roles rank member < admin < owner:
--   * members use agents and runs;
--   * admins also manage agents, members (except owners), invites, API keys and read the audit log;
--   * owners also make or unmake owners and delete the organization.
-- A fourth principal joins users and workers: an org API key (claims principal = 'api_key',
-- org_id, key_id, scope). It acts for its one org with member rights, or admin rights when it was
-- created with scope 'admin'; it is never an owner.

-- Principal helpers ---------------------------------------------------------------------------------

-- The verified user id, only when the principal is a user (API keys and workers have none).
create function private.user_id()
returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select case when (select auth.jwt() ->> 'principal') = 'user' then (select auth.uid()) end
$$;

-- The verified email of a user principal, lower-cased; null for every other principal.
create function private.user_email()
returns text
language sql
stable
security definer
set search_path = ''
as $$
  select case when (select auth.jwt() ->> 'principal') = 'user' then lower(nullif(auth.jwt() ->> 'email', '')) end
$$;

-- Who acts, for the audit log's defaults: 'user', 'api_key' or 'worker', and that actor's id.
create function private.actor_type()
returns text
language sql
stable
security definer
set search_path = ''
as $$
  select case (select auth.jwt() ->> 'principal')
    when 'user' then 'user'
    when 'api_key' then 'api_key'
    when 'worker' then 'worker'
    else 'system'
  end
$$;

create function private.actor_id()
returns text
language sql
stable
security definer
set search_path = ''
as $$
  select case (select auth.jwt() ->> 'principal')
    when 'user' then (select auth.uid())::text
    when 'api_key' then auth.jwt() ->> 'key_id'
    when 'worker' then auth.jwt() ->> 'org_id'
  end
$$;

-- Replaces the core migration's version: API keys act for their org, with member rights, or with
-- admin rights when their scope is 'admin'. Nothing but a user membership confers 'owner'.
create or replace function private.org_ids_for(min_role text)
returns setof uuid
language sql
stable
security definer
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
  union all
  select (select auth.jwt() ->> 'org_id')::uuid
  where (select auth.jwt() ->> 'principal') = 'api_key'
    and (min_role = 'member' or (min_role = 'admin' and (select auth.jwt() ->> 'scope') = 'admin'))
$$;

revoke execute on function private.user_id(), private.user_email(), private.actor_type(), private.actor_id()
  from public, anon;
grant execute on function private.user_id(), private.user_email(), private.actor_type(), private.actor_id()
  to authenticated;
-- Operator tooling writes audit entries too (as actor 'system'); the column defaults call these.
grant usage on schema private to service_role;
grant execute on function private.actor_type(), private.actor_id() to service_role;

-- Tables --------------------------------------------------------------------------------------------

create table public.invites (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  email text not null check (email = lower(email) and char_length(email) between 3 and 320),
  -- Owners are made by promotion, never by invite.
  role text not null check (role in ('admin', 'member')),
  -- SHA-256 of the invite token; the token itself is shown once to the inviter.
  token_hash bytea not null unique check (octet_length(token_hash) = 32),
  invited_by uuid,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  accepted_at timestamptz,
  accepted_by uuid,
  revoked_at timestamptz
);

create index invites_org_id_created_at_idx on public.invites (org_id, created_at desc, id desc);
-- Invitees find the invites addressed to them.
create index invites_email_idx on public.invites (email);

create table public.api_keys (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 200),
  -- The visible part (gap_live_<8 chars>), shown in lists so people can tell keys apart.
  prefix text not null unique check (prefix ~ '^gap_live_[A-Za-z0-9]{8}$'),
  -- SHA-256 of the whole key. The key carries 256 bits of randomness, so a fast hash is enough:
  -- there is nothing to brute-force, unlike a password (docs/security.md).
  key_hash bytea not null unique check (octet_length(key_hash) = 32),
  scope text not null default 'member' check (scope in ('member', 'admin')),
  created_by uuid,
  created_at timestamptz not null default now(),
  last_used_at timestamptz,
  revoked_at timestamptz,
  revoked_by text
);

create index api_keys_org_id_created_at_idx on public.api_keys (org_id, created_at desc, id desc);

create table public.audit_log (
  id bigint generated always as identity primary key,
  org_id uuid not null references public.organizations (id) on delete cascade,
  -- Filled from the transaction's claims, never by the writer (no insert grant on them).
  actor_type text not null default private.actor_type()
    check (actor_type in ('user', 'api_key', 'worker', 'system')),
  actor_id text default private.actor_id(),
  action text not null check (action ~ '^[a-z_]+(\.[a-z_]+)+$' and char_length(action) <= 100),
  target_type text check (char_length(target_type) <= 100),
  target_id text check (char_length(target_id) <= 200),
  metadata jsonb not null default '{}'::jsonb check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now()
);

create index audit_log_org_id_id_idx on public.audit_log (org_id, id desc);

-- Organizations: the creator becomes the owner --------------------------------------------------------
-- security definer: the creator is not a member yet, so no policy could let them add themselves.
-- Inserts by service_role (seeds, operators) carry no user and add nobody.

create function private.add_organization_creator() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  creator uuid := private.user_id();
begin
  if creator is not null then
    insert into public.organization_members (org_id, user_id, role) values (new.id, creator, 'owner');
  end if;
  return null;
end
$$;

revoke execute on function private.add_organization_creator() from public, anon, authenticated;

create trigger organizations_add_creator
  after insert on public.organizations
  for each row execute function private.add_organization_creator();

-- The last owner stays ------------------------------------------------------------------------------
-- An organization always has an owner: the last one can neither leave, be removed nor be demoted.
-- The organization row is locked first so two owners demoting each other concurrently serialize.
-- When the organization itself is being deleted, its memberships go with it.

create function private.keep_last_owner() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if old.role <> 'owner' or (tg_op = 'UPDATE' and new.role = 'owner' and new.org_id = old.org_id) then
    return case when tg_op = 'DELETE' then old else new end;
  end if;
  perform 1 from public.organizations where id = old.org_id for update;
  if not found then
    return case when tg_op = 'DELETE' then old else new end;
  end if;
  if not exists (
    select 1 from public.organization_members
    where org_id = old.org_id and role = 'owner' and user_id <> old.user_id
  ) then
    raise exception 'organization % would have no owner left', old.org_id
      using errcode = 'check_violation', constraint = 'organization_members_last_owner',
            hint = 'Make another member an owner first, or delete the organization.';
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;

revoke execute on function private.keep_last_owner() from public, anon, authenticated;

create trigger organization_members_keep_last_owner
  before update or delete on public.organization_members
  for each row execute function private.keep_last_owner();

-- Invites: a pending invite addressed to the caller lets them join with its role ------------------------

create function private.has_pending_invite(target_org uuid, wanted_role text)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.invites i
    where i.org_id = target_org
      and i.role = wanted_role
      and i.email = (select private.user_email())
      and i.accepted_at is null
      and i.revoked_at is null
      and i.expires_at > now()
  )
$$;

revoke execute on function private.has_pending_invite(uuid, text) from public, anon;
grant execute on function private.has_pending_invite(uuid, text) to authenticated;

-- API key authentication -------------------------------------------------------------------------------
-- Runs before any principal exists, so it cannot go through the policies: this narrow function is
-- the only way in. It answers only for the exact hash of a live key, bumps last_used_at (at most
-- once a minute, so a busy key does not turn every request into a write) and is executable by the
-- application's login role alone, never by anon or authenticated.

create function private.authenticate_api_key(presented_hash bytea)
returns table (key_id uuid, org_id uuid, scope text)
language plpgsql
security definer
set search_path = ''
as $$
declare
  found_key public.api_keys%rowtype;
begin
  select * into found_key from public.api_keys k
  where k.key_hash = presented_hash and k.revoked_at is null;
  if not found then
    return;
  end if;
  if found_key.last_used_at is null or found_key.last_used_at < now() - interval '1 minute' then
    update public.api_keys set last_used_at = now() where id = found_key.id;
  end if;
  key_id := found_key.id;
  org_id := found_key.org_id;
  scope := found_key.scope;
  return next;
end
$$;

revoke execute on function private.authenticate_api_key(bytea) from public, anon, authenticated;
grant usage on schema private to authenticator;
grant execute on function private.authenticate_api_key(bytea) to authenticator;

-- Row-level security --------------------------------------------------------------------------------

alter table public.invites enable row level security;
alter table public.invites force row level security;
alter table public.api_keys enable row level security;
alter table public.api_keys force row level security;
alter table public.audit_log enable row level security;
alter table public.audit_log force row level security;

-- Privileges ----------------------------------------------------------------------------------------

revoke all on public.invites, public.api_keys, public.audit_log from public, anon, authenticated;
revoke all on sequence public.audit_log_id_seq from public, anon, authenticated;
grant all on public.invites, public.api_keys to service_role;
-- Append-only even for operator tooling; rows leave only with their organization.
grant select, insert on public.audit_log to service_role;
grant all on sequence public.audit_log_id_seq to service_role;

grant insert (id, name) on public.organizations to authenticated;
grant update (name) on public.organizations to authenticated;
grant delete on public.organizations to authenticated;

grant insert (org_id, user_id, role) on public.organization_members to authenticated;
grant update (role) on public.organization_members to authenticated;
grant delete on public.organization_members to authenticated;

grant select on public.invites to authenticated;
grant insert (id, org_id, email, role, token_hash, invited_by, expires_at) on public.invites to authenticated;
grant update (accepted_at, accepted_by, revoked_at) on public.invites to authenticated;

-- key_hash is readable by admins: it is a SHA-256 of a 256-bit secret and useless without it.
grant select on public.api_keys to authenticated;
grant insert (id, org_id, name, prefix, key_hash, scope, created_by) on public.api_keys to authenticated;
grant update (revoked_at, revoked_by) on public.api_keys to authenticated;

grant select on public.audit_log to authenticated;
grant insert (org_id, action, target_type, target_id, metadata) on public.audit_log to authenticated;

-- Policies ------------------------------------------------------------------------------------------

-- Any signed-in person may found an organization (and becomes its owner); keys and workers may not.
create policy organizations_insert_user on public.organizations
  for insert to authenticated
  with check ((select private.user_id()) is not null);

create policy organizations_update_admin on public.organizations
  for update to authenticated
  using (id in (select private.org_ids_for('admin')))
  with check (id in (select private.org_ids_for('admin')));

create policy organizations_delete_owner on public.organizations
  for delete to authenticated
  using (id in (select private.org_ids_for('owner')));

-- Owners add anyone with any role, admins add admins and members; a person holding a pending
-- invite adds themselves with the invited role.
create policy organization_members_insert on public.organization_members
  for insert to authenticated
  with check (
    org_id in (select private.org_ids_for('owner'))
    or (org_id in (select private.org_ids_for('admin')) and role <> 'owner')
    or (user_id = (select private.user_id()) and (select private.has_pending_invite(org_id, role)))
  );

-- Admins change roles among admins and members; making or unmaking an owner takes an owner.
create policy organization_members_update on public.organization_members
  for update to authenticated
  using (
    org_id in (select private.org_ids_for('owner'))
    or (org_id in (select private.org_ids_for('admin')) and role <> 'owner')
  )
  with check (
    org_id in (select private.org_ids_for('owner'))
    or (org_id in (select private.org_ids_for('admin')) and role <> 'owner')
  );

-- Owners remove anyone, admins remove admins and members, and everyone may leave.
create policy organization_members_delete on public.organization_members
  for delete to authenticated
  using (
    org_id in (select private.org_ids_for('owner'))
    or (org_id in (select private.org_ids_for('admin')) and role <> 'owner')
    or user_id = (select private.user_id())
  );

-- Admins see their org's invites; an invitee sees the invites addressed to their email.
create policy invites_select on public.invites
  for select to authenticated
  using (
    org_id in (select private.org_ids_for('admin'))
    or email = (select private.user_email())
  );

create policy invites_insert_admin on public.invites
  for insert to authenticated
  with check (
    org_id in (select private.org_ids_for('admin'))
    and invited_by is not distinct from (select private.user_id())
  );

-- Admins revoke; the invitee marks their own invite accepted, in their own name.
create policy invites_update on public.invites
  for update to authenticated
  using (
    org_id in (select private.org_ids_for('admin'))
    or email = (select private.user_email())
  )
  with check (
    org_id in (select private.org_ids_for('admin'))
    or (email = (select private.user_email()) and accepted_by = (select private.user_id()))
  );

create policy api_keys_select_admin on public.api_keys
  for select to authenticated
  using (org_id in (select private.org_ids_for('admin')));

-- Only a person who is an admin creates keys, in their own name: a key cannot mint keys.
create policy api_keys_insert_admin_user on public.api_keys
  for insert to authenticated
  with check (
    org_id in (select private.org_ids_for('admin'))
    and created_by = (select private.user_id())
  );

create policy api_keys_update_admin on public.api_keys
  for update to authenticated
  using (org_id in (select private.org_ids_for('admin')))
  with check (org_id in (select private.org_ids_for('admin')));

create policy audit_log_select_admin on public.audit_log
  for select to authenticated
  using (org_id in (select private.org_ids_for('admin')));

-- Whoever acts for the org records what they did; the actor columns come from the claims.
create policy audit_log_insert_member on public.audit_log
  for insert to authenticated
  with check (org_id in (select private.org_ids_for('member')));

-- Runs: API keys start runs too ----------------------------------------------------------------------
-- A key has no person behind it, so its runs carry no created_by; a user's runs carry their own id.

drop policy agent_runs_insert_member on public.agent_runs;

create policy agent_runs_insert_member on public.agent_runs
  for insert to authenticated
  with check (
    org_id in (select private.org_ids_for('member'))
    and (
      created_by = (select private.user_id())
      or (created_by is null and (select auth.jwt() ->> 'principal') = 'api_key')
    )
  );
