-- Webhook intake learns the account a connection belongs to (HubSpot portal id, Kommo account),
-- so events about another account are dropped (issue 12, item 6): HubSpot signs every portal's
-- events with the same app secret, so the signature alone does not say whose they are.
drop function private.crm_webhook_target(uuid);

create function private.crm_webhook_target(target_connection uuid)
returns table (org_id uuid, provider text, webhook_secret_hash text, status text, external_account_id text)
language sql
stable
security definer
set search_path = ''
as $$
  select c.org_id, c.provider, c.webhook_secret_hash, c.status, c.external_account_id
  from public.crm_connections c where c.id = target_connection
$$;

revoke execute on function private.crm_webhook_target(uuid) from public, anon, authenticated;
grant execute on function private.crm_webhook_target(uuid) to authenticator;
