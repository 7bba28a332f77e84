-- Operational metrics (lib/metrics.ts): cross-tenant aggregates Prometheus shows on dashboards
-- and alerts. They return numbers only, never rows. Executable by `authenticator` itself (the
-- metrics collector queries outside any request or activity transaction), not by
-- `authenticated`, so no tenant request can call them.

create or replace function private.ops_pending_approvals()
returns bigint
language sql
stable
security definer
set search_path = ''
as $$
  select count(*) from public.run_approvals where status = 'pending'
$$;

-- Per provider: seconds since the oldest watermark among active connections (a connection that
-- never completed a sync counts from its creation).
create or replace function private.ops_crm_sync_lag()
returns table (provider text, lag_seconds double precision)
language sql
stable
security definer
set search_path = ''
as $$
  select c.provider, extract(epoch from now() - min(coalesce(s.watermark, c.created_at)))::double precision
    from public.crm_connections c
    left join public.crm_sync_state s on s.connection_id = c.id
   where c.status = 'active'
   group by c.provider
$$;

revoke execute on function private.ops_pending_approvals(), private.ops_crm_sync_lag() from public, anon, authenticated;
grant usage on schema private to authenticator;
grant execute on function private.ops_pending_approvals(), private.ops_crm_sync_lag() to authenticator;
