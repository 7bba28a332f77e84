-- Agent runtime: agent configuration, tool-using runs with human approval, the effect ledger
-- (side effects exactly once), metering (usage_daily) and the org's knowledge documents.
-- Same rules as the core migration: forced RLS, policies TO authenticated through the private
-- helpers wrapped in (select …), column-level grants for what each principal may write.

-- Agent configuration ---------------------------------------------------------------------------------

alter table public.agents
  add column max_steps int not null default 10 check (max_steps between 1 and 100),
  add column allowed_tools text[] not null default '{}'::text[]
    check (cardinality(allowed_tools) <= 50),
  add column approval_tools text[] not null default '{}'::text[]
    check (cardinality(approval_tools) <= 50),
  -- Tokens (input + output) one run may spend; null means no per-run limit.
  add column run_token_budget int check (run_token_budget > 0),
  -- What a conversation does with a message that arrives while the agent is working.
  add column busy_policy text not null default 'queue' check (busy_policy in ('queue', 'reject', 'interrupt')),
  add column approval_timeout_seconds int not null default 86400 check (approval_timeout_seconds between 1 and 2592000);

grant insert (max_steps, allowed_tools, approval_tools, run_token_budget, busy_policy, approval_timeout_seconds)
  on public.agents to authenticated;
grant update (max_steps, allowed_tools, approval_tools, run_token_budget, busy_policy, approval_timeout_seconds)
  on public.agents to authenticated;

-- Org daily quota: tokens per UTC day across all runs; null means unlimited. Written by operators
-- (service_role) for now, like the rest of organizations.
alter table public.organizations
  add column daily_token_quota bigint check (daily_token_quota > 0);

-- Runs: new statuses and metering ----------------------------------------------------------------------

alter table public.agent_runs drop constraint agent_runs_status_check;
alter table public.agent_runs add constraint agent_runs_status_check
  check (status in ('queued', 'running', 'awaiting_approval', 'sleeping', 'completed', 'failed', 'cancelled'));

alter table public.agent_runs
  add column llm_calls int not null default 0 check (llm_calls >= 0),
  add column cost_usd numeric(14, 6) not null default 0 check (cost_usd >= 0);

grant update (llm_calls, cost_usd) on public.agent_runs to authenticated;

-- Lists filter by status and agent within an org, newest first.
create index agent_runs_org_id_status_created_at_idx on public.agent_runs (org_id, status, created_at desc);

-- Durable events wake SSE readers: the notification carries ids only, readers fetch rows under
-- their own RLS scope. Delivered at commit, so a reader never sees an event that rolled back.
create function private.notify_run_event() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform pg_notify('run_events', new.run_id::text || ':' || new.seq::text);
  return null;
end
$$;

revoke execute on function private.notify_run_event() from public;

create trigger run_events_notify
  after insert on public.run_events
  for each row execute function private.notify_run_event();

-- Human approvals ---------------------------------------------------------------------------------------
-- A pending approval is created by the run's worker when a tool marked for approval is requested
-- (kind 'approval') or when the agent asks a person a question (kind 'input'). People answer by
-- inserting a response; the workflow (a Temporal Update with a validator) decides which response
-- counts, and the worker records it on the approval. People never write approvals directly.

create table public.run_approvals (
  id uuid primary key,
  org_id uuid not null,
  run_id uuid not null,
  -- The run_events seq of the approval request; one approval per tool call.
  seq int not null check (seq >= 1),
  kind text not null check (kind in ('approval', 'input')),
  tool_name text not null check (char_length(tool_name) between 1 and 100),
  status text not null default 'pending' check (status in ('pending', 'approved', 'rejected', 'expired', 'cancelled')),
  expires_at timestamptz not null,
  response_id uuid,
  decided_by uuid,
  decided_at timestamptz,
  created_at timestamptz not null default now(),
  unique (run_id, seq),
  unique (org_id, id),
  foreign key (org_id, run_id) references public.agent_runs (org_id, id) on delete cascade
);

create index run_approvals_org_id_run_id_idx on public.run_approvals (org_id, run_id);

create table public.run_approval_responses (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  approval_id uuid not null,
  author uuid not null,
  decision text not null check (decision in ('approve', 'reject')),
  comment text check (char_length(comment) <= 10000),
  created_at timestamptz not null default now(),
  foreign key (org_id, approval_id) references public.run_approvals (org_id, id) on delete cascade
);

create index run_approval_responses_org_id_approval_id_idx on public.run_approval_responses (org_id, approval_id);

-- Effect ledger -------------------------------------------------------------------------------------------
-- One row per side effect, keyed by `${workflowId}:${activityId}`. The effect and its row commit
-- in one transaction (for database effects), or the external system receives the same key
-- (for CRM writes), so a retried activity returns the recorded result instead of acting again.

create table public.effect_ledger (
  org_id uuid not null,
  idempotency_key text not null check (char_length(idempotency_key) between 1 and 300),
  run_id uuid,
  tool_name text not null check (char_length(tool_name) between 1 and 100),
  result jsonb not null default 'null'::jsonb,
  created_at timestamptz not null default now(),
  primary key (org_id, idempotency_key),
  foreign key (org_id, run_id) references public.agent_runs (org_id, id) on delete set null (run_id)
);

-- Metering -------------------------------------------------------------------------------------------------

create table public.usage_daily (
  org_id uuid not null references public.organizations (id) on delete cascade,
  day date not null,
  runs int not null default 0 check (runs >= 0),
  llm_calls int not null default 0 check (llm_calls >= 0),
  input_tokens bigint not null default 0 check (input_tokens >= 0),
  output_tokens bigint not null default 0 check (output_tokens >= 0),
  cost_usd numeric(18, 6) not null default 0 check (cost_usd >= 0),
  primary key (org_id, day)
);

-- Knowledge --------------------------------------------------------------------------------------------------

create table public.knowledge_documents (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  title text not null check (char_length(title) between 1 and 500),
  body text not null check (char_length(body) <= 200000),
  -- 'simple' configuration: customers write in many languages, and stemming one of them wrongly
  -- is worse than not stemming.
  search tsvector not null generated always as (
    setweight(to_tsvector('simple', title), 'A') || setweight(to_tsvector('simple', body), 'B')
  ) stored,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (org_id, id)
);

create index knowledge_documents_org_id_created_at_idx on public.knowledge_documents (org_id, created_at desc, id desc);
create index knowledge_documents_search_idx on public.knowledge_documents using gin (search);

create trigger knowledge_documents_touch_updated_at
  before update on public.knowledge_documents
  for each row execute function private.touch_updated_at();

-- Row-level security ---------------------------------------------------------------------------------------

alter table public.run_approvals enable row level security;
alter table public.run_approvals force row level security;
alter table public.run_approval_responses enable row level security;
alter table public.run_approval_responses force row level security;
alter table public.effect_ledger enable row level security;
alter table public.effect_ledger force row level security;
alter table public.usage_daily enable row level security;
alter table public.usage_daily force row level security;
alter table public.knowledge_documents enable row level security;
alter table public.knowledge_documents force row level security;

revoke all on
  public.run_approvals, public.run_approval_responses, public.effect_ledger, public.usage_daily, public.knowledge_documents
  from public, anon, authenticated;
grant all on
  public.run_approvals, public.run_approval_responses, public.effect_ledger, public.usage_daily, public.knowledge_documents
  to service_role;

grant select on public.run_approvals to authenticated;
grant insert (id, org_id, run_id, seq, kind, tool_name, expires_at) on public.run_approvals to authenticated;
grant update (status, response_id, decided_by, decided_at) on public.run_approvals to authenticated;

grant select on public.run_approval_responses to authenticated;
grant insert (org_id, approval_id, author, decision, comment) on public.run_approval_responses to authenticated;

grant select on public.effect_ledger to authenticated;
grant insert (org_id, idempotency_key, run_id, tool_name, result) on public.effect_ledger to authenticated;

grant select on public.usage_daily to authenticated;
grant insert (org_id, day, runs, llm_calls, input_tokens, output_tokens, cost_usd) on public.usage_daily to authenticated;
grant update (runs, llm_calls, input_tokens, output_tokens, cost_usd) on public.usage_daily to authenticated;

grant select, delete on public.knowledge_documents to authenticated;
grant insert (org_id, title, body, created_by) on public.knowledge_documents to authenticated;
grant update (title, body) on public.knowledge_documents to authenticated;

create policy run_approvals_select_member on public.run_approvals
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')));

create policy run_approvals_insert_worker on public.run_approvals
  for insert to authenticated
  with check (org_id = (select private.worker_org_id()));

create policy run_approvals_update_worker on public.run_approvals
  for update to authenticated
  using (org_id = (select private.worker_org_id()))
  with check (org_id = (select private.worker_org_id()));

create policy run_approval_responses_select_member on public.run_approval_responses
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')));

-- Members answer in their own name only; workers never answer for a person.
create policy run_approval_responses_insert_member on public.run_approval_responses
  for insert to authenticated
  with check (
    org_id in (select private.org_ids_for('member'))
    and author = (select auth.uid())
  );

create policy effect_ledger_select_member on public.effect_ledger
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')));

create policy effect_ledger_insert_worker on public.effect_ledger
  for insert to authenticated
  with check (org_id = (select private.worker_org_id()));

create policy usage_daily_select_member on public.usage_daily
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')));

create policy usage_daily_insert_worker on public.usage_daily
  for insert to authenticated
  with check (org_id = (select private.worker_org_id()));

create policy usage_daily_update_worker on public.usage_daily
  for update to authenticated
  using (org_id = (select private.worker_org_id()))
  with check (org_id = (select private.worker_org_id()));

create policy knowledge_documents_select_member on public.knowledge_documents
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')));

create policy knowledge_documents_insert_admin on public.knowledge_documents
  for insert to authenticated
  with check (org_id in (select private.org_ids_for('admin')));

create policy knowledge_documents_update_admin on public.knowledge_documents
  for update to authenticated
  using (org_id in (select private.org_ids_for('admin')))
  with check (org_id in (select private.org_ids_for('admin')));

create policy knowledge_documents_delete_admin on public.knowledge_documents
  for delete to authenticated
  using (org_id in (select private.org_ids_for('admin')));
