-- Members' emails ---------------------------------------------------------------------------------
-- The console must show who a member is, but nothing a request may read knows users' emails: plain
-- Postgres has no auth.users, and on Supabase the request role has no grant on it. So a membership
-- records the email of the verified sign-in token that created it: the founder's (through
-- private.add_organization_creator) and the invitee's (accepting an invite, whose email must
-- already match the token's). Readers are the org's members, as for the rest of the row.
--
-- Requests cannot write the column (no insert or update grant to authenticated): the value comes
-- only from the transaction's verified claims, and only for the caller's own membership, so nobody
-- can label another user with an address of their choosing. Memberships added for someone else
-- (owners adding users directly, seeds, operators as service_role) keep what service_role gave, or null.

alter table public.organization_members add column email text;

comment on column public.organization_members.email is
  'The member''s email from the verified sign-in token that created the membership (lower-cased); null when unknown.';

-- security definer: it reads the claims through private.user_id()/user_email(), which service_role
-- (seeds, operators) may not execute, and service_role's inserts fire it too.
create function private.stamp_member_email() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.email is null and new.user_id = private.user_id() then
    new.email := private.user_email();
  end if;
  return new;
end
$$;

revoke execute on function private.stamp_member_email() from public, anon, authenticated;

create trigger organization_members_stamp_email
  before insert on public.organization_members
  for each row execute function private.stamp_member_email();
