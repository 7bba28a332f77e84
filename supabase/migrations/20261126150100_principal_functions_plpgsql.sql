-- The principal helpers that RLS policies and column defaults call, rewritten in PL/pgSQL with
-- the same results.
--
-- They were SQL functions. A SECURITY DEFINER SQL function is never inlined, and before
-- PostgreSQL 18 it parses and plans its body again in every statement that calls it. The
-- policies call org_ids_for and worker_org_id in nearly every statement, so a profile of
-- `npm run bench` (perf, with call graphs) found 58 % of Postgres' CPU under fmgr_sql, for
-- statements whose own work is a primary-key lookup. PL/pgSQL keeps a function's parsed body and
-- its query plans for the session, so a call costs little more than reading the claims.
--
-- Semantics are unchanged; tests/db (the RLS matrix and isolation sweep) holds them to that.

-- Organizations the current principal acts for with at least `min_role`
-- (member < admin < owner): a user's memberships of that rank; a worker's one org, for
-- 'member' only; an API key's org, as member, or as admin when its scope is 'admin'. Unknown
-- principals and unknown role names match nothing.
create or replace function private.org_ids_for(min_role text)
returns setof uuid
language plpgsql
stable
security definer
rows 10
set search_path = ''
as $$
declare
  claims constant jsonb := auth.jwt();
  wanted constant int := case min_role when 'member' then 1 when 'admin' then 2 when 'owner' then 3 end;
begin
  case claims ->> 'principal'
    when 'user' then
      return query
        select m.org_id
          from public.organization_members m
         where m.user_id = auth.uid()
           and case m.role when 'member' then 1 when 'admin' then 2 when 'owner' then 3 end >= wanted;
    when 'worker' then
      if min_role = 'member' then
        return next (claims ->> 'org_id')::uuid;
      end if;
    when 'api_key' then
      if min_role = 'member' or (min_role = 'admin' and claims ->> 'scope' = 'admin') then
        return next (claims ->> 'org_id')::uuid;
      end if;
    else
      null;
  end case;
end
$$;

-- The org a worker principal acts for; null for every other principal.
create or replace function private.worker_org_id()
returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  claims constant jsonb := auth.jwt();
begin
  if claims ->> 'principal' = 'worker' then
    return (claims ->> 'org_id')::uuid;
  end if;
  return null;
end
$$;

-- The verified user id, only when the principal is a user (API keys and workers have none).
create or replace function private.user_id()
returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if auth.jwt() ->> 'principal' = 'user' then
    return auth.uid();
  end if;
  return null;
end
$$;

-- The verified email of a user principal, lower-cased; null for every other principal.
create or replace function private.user_email()
returns text
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  claims constant jsonb := auth.jwt();
begin
  if claims ->> 'principal' = 'user' then
    return lower(nullif(claims ->> 'email', ''));
  end if;
  return null;
end
$$;

-- Who acts, for the audit log's defaults: 'user', 'api_key' or 'worker', and that actor's id.
create or replace function private.actor_type()
returns text
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return case auth.jwt() ->> 'principal'
    when 'user' then 'user'
    when 'api_key' then 'api_key'
    when 'worker' then 'worker'
    else 'system'
  end;
end
$$;

create or replace function private.actor_id()
returns text
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  claims constant jsonb := auth.jwt();
begin
  return case claims ->> 'principal'
    when 'user' then auth.uid()::text
    when 'api_key' then claims ->> 'key_id'
    when 'worker' then claims ->> 'org_id'
  end;
end
$$;
