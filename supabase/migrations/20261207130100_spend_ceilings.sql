-- Spend has a ceiling by default (issue 12, item 4; docs/security.md "Spend").
--
-- organizations.daily_token_quota: null now means "the operator's default"
-- (ORG_DAILY_TOKEN_QUOTA_DEFAULT), never unlimited; admins set their own within the operator's
-- maximum through PUT /v1/orgs/:orgId/quota (the maximum is configuration, so the API checks it).
-- organizations.allowed_models: the models this org's agents may use (ids or `vendor/*`
-- prefixes), within the operator's catalog; null means the whole catalog.
alter table public.organizations
  add column allowed_models text[] check (allowed_models is null or cardinality(allowed_models) between 1 and 100);

comment on column public.organizations.daily_token_quota is 'Tokens per UTC day across all runs; null: the operator default (ORG_DAILY_TOKEN_QUOTA_DEFAULT).';

grant update (daily_token_quota, allowed_models) on public.organizations to authenticated;

-- The tokens a run has reserved for its LLM call in flight (seq `reserved_seq`). A call is
-- admitted only while the org's tokens today plus every reservation of its runs are below the
-- quota, under a per-org lock, and the reservation is replaced by the call's real usage in the
-- statement that records it: concurrent runs overshoot the quota by at most one call's worth,
-- and no transaction is held across the call (activities/agent-run/spend.ts).
alter table public.agent_runs
  add column reserved_tokens int not null default 0 check (reserved_tokens >= 0),
  add column reserved_seq int;

grant update (reserved_tokens, reserved_seq) on public.agent_runs to authenticated;

-- The admission check adds up an org's reservations; only runs with a call in flight have one.
create index agent_runs_reserved_idx on public.agent_runs (org_id) where reserved_tokens > 0;
