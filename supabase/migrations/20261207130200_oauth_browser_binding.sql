-- The OAuth `state` is bound to the browser that started the flow (issue 12, item 5): the hash
-- of a short-lived HttpOnly cookie set when an admin starts connecting, checked at the callback
-- (api/services/crm/oauth-binding.ts). States issued before this have none and are refused.
alter table public.oauth_states
  add column browser_binding_hash text check (browser_binding_hash ~ '^[0-9a-f]{64}$');

drop function private.take_crm_oauth_state(text);

-- OAuth callback: consumes a state (single use) and answers what it was issued for, and to whom.
create function private.take_crm_oauth_state(presented_hash text)
returns table (org_id uuid, connection_id uuid, created_by uuid, expired boolean, browser_binding_hash text)
language sql
volatile
security definer
set search_path = ''
as $$
  delete from public.oauth_states s where s.state_hash = presented_hash
  returning s.org_id, s.connection_id, s.created_by, s.expires_at < now(), s.browser_binding_hash
$$;

revoke execute on function private.take_crm_oauth_state(text) from public, anon, authenticated;
grant execute on function private.take_crm_oauth_state(text) to authenticator;
