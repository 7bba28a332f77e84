-- A conversation that needs a person: the agent's reply could not reach the lead (the CRM refused
-- it for good), so someone must look at the thread. The flag is its own row, apart from the run's
-- status and from a human handoff (which stops the agent; this does not): the worker raises it,
-- a member clears it by acknowledging (DELETE …/runs/:runId/attention). A new failure while it is
-- raised keeps the first `since` and updates the reason.
create table public.run_attention (
  org_id uuid not null,
  run_id uuid primary key,
  reason text not null check (reason in ('reply_failed')),
  detail text not null default '' check (char_length(detail) <= 1000),
  since timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  foreign key (org_id, run_id) references public.agent_runs (org_id, id) on delete cascade
);
create index run_attention_org_id_since_idx on public.run_attention (org_id, since);

alter table public.run_attention enable row level security;
alter table public.run_attention force row level security;

revoke all on public.run_attention from public, anon, authenticated;
grant all on public.run_attention to service_role;
grant select, delete on public.run_attention to authenticated;
grant insert (org_id, run_id, reason, detail) on public.run_attention to authenticated;
grant update (reason, detail, updated_at) on public.run_attention to authenticated;

create policy run_attention_select_member_or_worker on public.run_attention
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')) or org_id = (select private.worker_org_id()));
create policy run_attention_insert_worker on public.run_attention
  for insert to authenticated with check (org_id = (select private.worker_org_id()));
create policy run_attention_update_worker on public.run_attention
  for update to authenticated
  using (org_id = (select private.worker_org_id())) with check (org_id = (select private.worker_org_id()));
-- Any member may acknowledge: the people who watch the conversations are not only admins.
create policy run_attention_delete_member on public.run_attention
  for delete to authenticated using (org_id in (select private.org_ids_for('member')));
