-- The agent's answers go back into the lead's CRM thread (integrations/crm/messaging).
--
-- Where a reply goes is known only from the lead's incoming message (Kommo's talk id and channel),
-- so the conversation run keeps the latest one it heard from (`reply_target`, written by the
-- webhook intake). Neither CRM takes an idempotency key, so each part of each answer gets a ledger
-- row BEFORE it is sent and is marked sent after: a retry that finds an attempted-but-unconfirmed
-- row reads the thread back for our own message before it sends again.
alter table public.agent_runs add column reply_target jsonb;
grant update (reply_target) on public.agent_runs to authenticated;

create table public.crm_reply_sends (
  org_id uuid not null,
  run_id uuid not null,
  -- The answer's llm.completed event, and the part of a split answer.
  answer_seq integer not null check (answer_seq >= 0),
  part smallint not null check (part >= 0),
  status text not null default 'attempted' check (status in ('attempted', 'sent')),
  route text not null check (route in ('hubspot_thread', 'kommo_talk', 'kommo_salesbot')),
  external_id text check (char_length(external_id) between 1 and 200),
  attempted_at timestamptz not null default now(),
  sent_at timestamptz,
  primary key (run_id, answer_seq, part),
  foreign key (org_id, run_id) references public.agent_runs (org_id, id) on delete cascade
);
create index crm_reply_sends_org_id_run_id_idx on public.crm_reply_sends (org_id, run_id);

alter table public.crm_reply_sends enable row level security;
alter table public.crm_reply_sends force row level security;

revoke all on public.crm_reply_sends from public, anon, authenticated;
grant all on public.crm_reply_sends to service_role;
grant select on public.crm_reply_sends to authenticated;
grant insert (org_id, run_id, answer_seq, part, route) on public.crm_reply_sends to authenticated;
grant update (status, external_id, sent_at, attempted_at) on public.crm_reply_sends to authenticated;

-- Only the org's worker sends replies; members see what was sent for their runs.
create policy crm_reply_sends_select_member_or_worker on public.crm_reply_sends
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')) or org_id = (select private.worker_org_id()));
create policy crm_reply_sends_insert_worker on public.crm_reply_sends
  for insert to authenticated with check (org_id = (select private.worker_org_id()));
create policy crm_reply_sends_update_worker on public.crm_reply_sends
  for update to authenticated
  using (org_id = (select private.worker_org_id())) with check (org_id = (select private.worker_org_id()));
