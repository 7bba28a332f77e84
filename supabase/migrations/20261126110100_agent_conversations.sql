-- Conversations: a long-lived agent run per (agent, thread key) that receives user messages.
-- The run row is the conversation (thread_key set, input empty); each message a person sends is a
-- conversation_messages row, which the run's workflow accepts through a Temporal Update and
-- copies into its event log (user.message) when its turn comes.

alter table public.agent_runs
  add column thread_key text check (char_length(thread_key) between 1 and 200);

-- At most one open conversation per agent and thread key; once it ends (idle timeout, cancel), the
-- next message starts a new one under the same key.
create unique index agent_runs_org_id_agent_id_thread_key_idx
  on public.agent_runs (org_id, agent_id, thread_key)
  where thread_key is not null and status not in ('completed', 'failed', 'cancelled');

grant insert (thread_key) on public.agent_runs to authenticated;

create table public.conversation_messages (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  run_id uuid not null,
  author uuid not null,
  content text not null check (char_length(content) between 1 and 100000),
  created_at timestamptz not null default now(),
  foreign key (org_id, run_id) references public.agent_runs (org_id, id) on delete cascade
);

create index conversation_messages_org_id_run_id_idx on public.conversation_messages (org_id, run_id);

alter table public.conversation_messages enable row level security;
alter table public.conversation_messages force row level security;

revoke all on public.conversation_messages from public, anon, authenticated;
grant all on public.conversation_messages to service_role;
grant select on public.conversation_messages to authenticated;
grant insert (org_id, run_id, author, content) on public.conversation_messages to authenticated;

create policy conversation_messages_select_member on public.conversation_messages
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')));

-- People write in their own name only.
create policy conversation_messages_insert_member on public.conversation_messages
  for insert to authenticated
  with check (
    org_id in (select private.org_ids_for('member'))
    and author = (select auth.uid())
  );
