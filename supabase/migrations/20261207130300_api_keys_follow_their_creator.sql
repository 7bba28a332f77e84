-- An API key acts with its creator's standing (issue 12, item 6): an admin key works only while
-- the person who created it is still an admin or owner of the org, a member key only while they
-- are still a member. Demoting or removing the creator disables their keys at once (streams
-- re-check credentials every few seconds, api/services/stream-guard.ts). Keys with no creator
-- (issued by operators) are unaffected.
create or replace function private.authenticate_api_key(presented_hash bytea)
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
  if found_key.created_by is not null and not exists (
    select 1 from public.organization_members m
     where m.org_id = found_key.org_id and m.user_id = found_key.created_by
       and (found_key.scope = 'member' or m.role in ('admin', 'owner'))
  ) then
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
