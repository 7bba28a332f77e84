-- What a Supabase project provides before any migration runs, rebuilt for plain PostgreSQL 15+
-- so that supabase/migrations apply unchanged to both (see /work/shared/reference/rls-and-security.md §1).
--
-- The migration runner applies this file before every run, so it must be idempotent, and it
-- must be harmless on a real Supabase project: everything below only creates what is missing
-- and never replaces Supabase's own roles, functions or settings.
--
-- Roles are cluster-wide while the runner's advisory lock is per database, so two databases
-- on one cluster can bootstrap at the same moment. Each role change therefore tolerates losing
-- that race: on failure it re-checks the desired state and only re-raises if it still is not met.

-- Roles ---------------------------------------------------------------------------------------

do $bootstrap$
declare
  wanted record;
begin
  for wanted in
    select * from (values
      ('anon', 'create role anon nologin noinherit'),
      ('authenticated', 'create role authenticated nologin noinherit'),
      ('service_role', 'create role service_role nologin noinherit bypassrls'),
      -- The application logs in as authenticator and switches per transaction to one of the
      -- roles above. No password here: deployments set it out of band (or use trust/cert auth).
      ('authenticator', 'create role authenticator login noinherit')
    ) as roles (name, ddl)
  loop
    if not exists (select 1 from pg_catalog.pg_roles where rolname = wanted.name) then
      begin
        execute wanted.ddl;
      exception when others then
        if not exists (select 1 from pg_catalog.pg_roles where rolname = wanted.name) then
          raise;
        end if;
      end;
    end if;
  end loop;

  -- Unlike Supabase (where PostgREST serves service_role requests), the application never
  -- acts as service_role: operator tooling logs in as the owner. So authenticator is not a
  -- member of it, and SQL injected through an app connection could not switch to bypassrls.
  for wanted in
    select * from (values ('anon'), ('authenticated')) as granted (name)
  loop
    if not pg_catalog.pg_has_role('authenticator', wanted.name, 'member') then
      begin
        execute pg_catalog.format('grant %I to authenticator', wanted.name);
      exception when others then
        if not pg_catalog.pg_has_role('authenticator', wanted.name, 'member') then
          raise;
        end if;
      end;
    end if;
  end loop;

  -- Earlier bootstraps granted service_role to authenticator; take it back on plain Postgres
  -- (never on Supabase itself, recognisable by its supabase_admin role).
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'supabase_admin')
     and pg_catalog.pg_has_role('authenticator', 'service_role', 'member') then
    revoke service_role from authenticator;
  end if;

  -- Supabase's limits. Only set when the role has none, so an operator's own value survives.
  -- These apply to sessions that log in as the role; lib/db.ts applies them per transaction,
  -- because a role switch with set_config('role', ...) does not load role settings.
  for wanted in
    select * from (values ('anon', '3s'), ('authenticated', '8s')) as limits (name, timeout)
  loop
    if not exists (
      select 1
      from pg_catalog.pg_db_role_setting s
      join pg_catalog.pg_roles r on r.oid = s.setrole
      where r.rolname = wanted.name
        and s.setdatabase = 0
        and exists (select 1 from unnest(s.setconfig) c where c like 'statement_timeout=%')
    ) then
      begin
        execute pg_catalog.format('alter role %I set statement_timeout = %L', wanted.name, wanted.timeout);
      exception when others then
        -- Lost a race with another database's bootstrap (tuple concurrently updated): its value is ours.
        if not exists (
          select 1
          from pg_catalog.pg_db_role_setting s
          join pg_catalog.pg_roles r on r.oid = s.setrole
          where r.rolname = wanted.name and s.setdatabase = 0
        ) then
          raise;
        end if;
      end;
    end if;
  end loop;
end
$bootstrap$;

grant usage on schema public to anon, authenticated, service_role;

-- Schema auth -----------------------------------------------------------------------------------
-- Claims arrive transaction-locally in request.jwt.claims. After the transaction ends the
-- setting reads back as '' rather than NULL on that pooled connection, hence nullif(..., '').
-- auth.uid() also honours the legacy per-claim setting request.jwt.claim.sub, as Supabase's does.

create schema if not exists auth;

do $bootstrap$
begin
  if pg_catalog.to_regprocedure('auth.uid()') is null then
    execute $ddl$
      create function auth.uid() returns uuid
      language sql stable
      as $fn$
        select coalesce(
          nullif(current_setting('request.jwt.claim.sub', true), ''),
          (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
        )::uuid
      $fn$
    $ddl$;
  end if;

  if pg_catalog.to_regprocedure('auth.role()') is null then
    execute $ddl$
      create function auth.role() returns text
      language sql stable
      as $fn$
        select coalesce(
          nullif(current_setting('request.jwt.claim.role', true), ''),
          (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
        )::text
      $fn$
    $ddl$;
  end if;

  if pg_catalog.to_regprocedure('auth.email()') is null then
    execute $ddl$
      create function auth.email() returns text
      language sql stable
      as $fn$
        select coalesce(
          nullif(current_setting('request.jwt.claim.email', true), ''),
          (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
        )::text
      $fn$
    $ddl$;
  end if;

  if pg_catalog.to_regprocedure('auth.jwt()') is null then
    execute $ddl$
      create function auth.jwt() returns jsonb
      language sql stable
      as $fn$
        select coalesce(nullif(current_setting('request.jwt.claims', true), '')::jsonb, '{}'::jsonb)
      $fn$
    $ddl$;
  end if;

  if not pg_catalog.has_schema_privilege('authenticated', 'auth', 'usage')
     or not pg_catalog.has_schema_privilege('anon', 'auth', 'usage')
     or not pg_catalog.has_schema_privilege('service_role', 'auth', 'usage') then
    grant usage on schema auth to anon, authenticated, service_role;
  end if;
end
$bootstrap$;

-- Migration ledger ------------------------------------------------------------------------------
-- The Supabase CLI's own table is (version text primary key, statements text[], name text);
-- applied_at is an addition the CLI ignores. An existing table is left exactly as it is.

create schema if not exists supabase_migrations;

create table if not exists supabase_migrations.schema_migrations (
  version text primary key,
  statements text[],
  name text,
  applied_at timestamptz default now()
);
