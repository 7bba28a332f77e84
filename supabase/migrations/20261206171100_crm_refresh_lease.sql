-- OAuth refresh no longer holds a row lock across the call to the CRM's token endpoint (a
-- network call inside a transaction pins a pooled connection for as long as the CRM takes).
-- Instead a refresher claims the refresh for a while in a short transaction, calls the CRM with
-- no transaction open, and stores the new tokens, clearing the claim. Others wait for the new
-- `version` or for the claim to lapse (integrations/crm/credentials.ts).
alter table public.crm_credentials add column refresh_claimed_until timestamptz;
grant update (refresh_claimed_until) on public.crm_credentials to authenticated;
