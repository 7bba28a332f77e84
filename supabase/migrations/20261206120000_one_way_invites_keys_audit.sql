-- One-way state for invites and API keys, and an audit log nobody can write by hand.
--
-- Before this migration the policies checked who may update an invite or a key, not what the
-- update did: an invitee could clear `accepted_at` (or `revoked_at`) on its own invite and join
-- again through private.has_pending_invite, an admin could un-revoke a key, and any member could
-- insert audit entries of its choosing. The transitions are now enforced by triggers that run for
-- every role (operators included), and audit entries of the API's actions are written by triggers
-- on the rows the actions change, so an entry exists exactly when its change committed.

-- Invites: pending → accepted or pending → revoked, and nothing after that -----------------------------

create function private.invite_transition() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.revoked_at is not null
     and (new.revoked_at is distinct from old.revoked_at or new.accepted_at is distinct from old.accepted_at or new.accepted_by is distinct from old.accepted_by) then
    raise exception 'invite % was revoked; revoked invites stay revoked', old.id using errcode = '42501';
  end if;
  if old.accepted_at is not null
     and (new.accepted_at is distinct from old.accepted_at or new.accepted_by is distinct from old.accepted_by or new.revoked_at is distinct from old.revoked_at) then
    raise exception 'invite % was used; used invites stay used', old.id using errcode = '42501';
  end if;
  if old.accepted_at is null and (new.accepted_at is not null or new.accepted_by is not null) then
    -- Accepted once, now, by the signed-in person whose email it was sent to, in their own name;
    -- an admin of the org may update the row but is not its invitee.
    if new.accepted_at is null or new.accepted_by is null or new.accepted_by is distinct from (select private.user_id())
       or old.email is distinct from (select private.user_email()) then
      raise exception 'invite % can only be accepted by its invitee, in their own name', old.id using errcode = '42501';
    end if;
    if old.expires_at <= now() then
      raise exception 'invite % has expired', old.id using errcode = '42501';
    end if;
    new.accepted_at := now();
  end if;
  if old.revoked_at is null and new.revoked_at is not null then
    new.revoked_at := now();
  end if;
  return new;
end
$$;

revoke execute on function private.invite_transition() from public, anon, authenticated;

create trigger invites_one_way
  before update on public.invites
  for each row execute function private.invite_transition();

-- API keys: revoked stays revoked ------------------------------------------------------------------------

create function private.api_key_transition() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.revoked_at is not null and (new.revoked_at is distinct from old.revoked_at or new.revoked_by is distinct from old.revoked_by) then
    raise exception 'API key % was revoked; revoked keys stay revoked', old.id using errcode = '42501';
  end if;
  if old.revoked_at is null and new.revoked_at is not null then
    new.revoked_at := now();
  end if;
  return new;
end
$$;

revoke execute on function private.api_key_transition() from public, anon, authenticated;

create trigger api_keys_one_way
  before update on public.api_keys
  for each row execute function private.api_key_transition();

-- Audit log: written by the changes themselves ------------------------------------------------------------
-- Only principals' actions are recorded here (operator tooling, acting as no principal, records
-- its own entries through service_role). An organization being deleted takes its entries with it,
-- so nothing is recorded for the rows its deletion cascades to.

create function private.append_audit(entry_org uuid, entry_action text, entry_target_type text, entry_target_id text, entry_metadata jsonb)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if (select private.actor_type()) = 'system' then
    return;
  end if;
  if not exists (select 1 from public.organizations where id = entry_org) then
    return;
  end if;
  insert into public.audit_log (org_id, action, target_type, target_id, metadata)
  values (entry_org, entry_action, entry_target_type, entry_target_id, entry_metadata);
end
$$;

revoke execute on function private.append_audit(uuid, text, text, text, jsonb) from public, anon, authenticated;

create function private.audit_change() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  case tg_table_name
    when 'organizations' then
      if tg_op = 'INSERT' then
        perform private.append_audit(new.id, 'organization.created', 'organization', new.id::text, jsonb_build_object('name', new.name));
      elsif new.name is distinct from old.name then
        perform private.append_audit(new.id, 'organization.renamed', 'organization', new.id::text, jsonb_build_object('from', old.name, 'to', new.name));
      end if;
    when 'organization_members' then
      if tg_op = 'UPDATE' and new.role is distinct from old.role then
        perform private.append_audit(new.org_id, 'member.role_changed', 'user', new.user_id::text, jsonb_build_object('from', old.role, 'to', new.role));
      elsif tg_op = 'DELETE' then
        perform private.append_audit(
          old.org_id,
          case when old.user_id = (select private.user_id()) then 'member.left' else 'member.removed' end,
          'user', old.user_id::text, jsonb_build_object('role', old.role));
      end if;
    when 'invites' then
      if tg_op = 'INSERT' then
        perform private.append_audit(new.org_id, 'invite.created', 'invite', new.id::text, jsonb_build_object('email', new.email, 'role', new.role));
      elsif old.revoked_at is null and new.revoked_at is not null then
        perform private.append_audit(new.org_id, 'invite.revoked', 'invite', new.id::text, jsonb_build_object('email', new.email));
      elsif old.accepted_at is null and new.accepted_at is not null then
        perform private.append_audit(new.org_id, 'invite.accepted', 'invite', new.id::text, jsonb_build_object('role', new.role));
        perform private.append_audit(new.org_id, 'member.joined', 'user', new.accepted_by::text, jsonb_build_object('role', new.role, 'via', 'invite'));
      end if;
    when 'api_keys' then
      if tg_op = 'INSERT' then
        perform private.append_audit(new.org_id, 'api_key.created', 'api_key', new.id::text, jsonb_build_object('prefix', new.prefix, 'scope', new.scope, 'name', new.name));
      elsif old.revoked_at is null and new.revoked_at is not null then
        perform private.append_audit(new.org_id, 'api_key.revoked', 'api_key', new.id::text, jsonb_build_object('prefix', new.prefix));
      end if;
    when 'crm_connections' then
      if tg_op = 'INSERT' then
        perform private.append_audit(new.org_id, 'crm_connection.created', 'crm_connection', new.id::text, jsonb_build_object('provider', new.provider, 'authKind', new.auth_kind));
      elsif tg_op = 'DELETE' then
        perform private.append_audit(old.org_id, 'crm_connection.deleted', 'crm_connection', old.id::text, '{}'::jsonb);
      end if;
  end case;
  return null;
end
$$;

revoke execute on function private.audit_change() from public, anon, authenticated;

create trigger organizations_audit after insert or update of name on public.organizations
  for each row execute function private.audit_change();
create trigger organization_members_audit after update of role or delete on public.organization_members
  for each row execute function private.audit_change();
create trigger invites_audit after insert or update on public.invites
  for each row execute function private.audit_change();
create trigger api_keys_audit after insert or update of revoked_at on public.api_keys
  for each row execute function private.audit_change();
create trigger crm_connections_audit after insert or delete on public.crm_connections
  for each row execute function private.audit_change();

-- Nobody acting through the application inserts audit entries by hand, except a worker for its own org.
drop policy audit_log_insert_member on public.audit_log;
create policy audit_log_insert_worker on public.audit_log
  for insert to authenticated
  with check (org_id = (select private.worker_org_id()));
