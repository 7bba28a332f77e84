-- The conversations list by latest activity (GET /v1/orgs/:orgId/conversations): the thread the
-- lead just wrote in is on top. `agent_runs.last_activity_at` is the time of the latest of:
--   - the run's creation (a thread with nothing else yet),
--   - a message of the lead or of a member (conversation_messages),
--   - an answer of the agent (run_events `llm.completed` with text, what the list shows as the
--     agent's message),
--   - a handoff to people starting (handoff_at) and a reply failure flagging the thread
--     (run_attention inserted).
-- A member resuming a handoff or acknowledging a flag is not activity: the team acting on the
-- list does not reorder it under them (their own messages do).
--
-- Maintained by triggers in the transaction that records the cause, whoever records it (API,
-- activities, operator tooling), so the list can never disagree with the rows. Request roles
-- have no privilege on the column (no insert, no update grant): they move it only by recording
-- what counts as activity, under the policies of those tables. The time only ever grows.

alter table public.agent_runs add column last_activity_at timestamptz;

-- Backfill without touching updated_at (the backfill is not a change of the run).
alter table public.agent_runs disable trigger agent_runs_touch_updated_at;
update public.agent_runs r
   set last_activity_at = greatest(
         r.created_at,
         r.handoff_at,
         (select max(m.created_at) from public.conversation_messages m where m.org_id = r.org_id and m.run_id = r.id),
         (select max(e.created_at) from public.run_events e
           where e.org_id = r.org_id and e.run_id = r.id and e.type = 'llm.completed' and coalesce(e.payload->>'content', '') <> ''),
         (select a.since from public.run_attention a where a.org_id = r.org_id and a.run_id = r.id))
 where r.thread_key is not null;
update public.agent_runs set last_activity_at = created_at where thread_key is null;
alter table public.agent_runs enable trigger agent_runs_touch_updated_at;

-- A new run starts with its creation as its activity (the service role may give one, e.g. when
-- importing threads); NOT NULL is checked after this trigger.
create function private.agent_runs_initial_activity()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.last_activity_at := coalesce(new.last_activity_at, new.created_at);
  return new;
end
$$;
create trigger agent_runs_initial_activity
  before insert on public.agent_runs
  for each row execute function private.agent_runs_initial_activity();

alter table public.agent_runs alter column last_activity_at set not null;

-- A handoff starting is activity on the run row itself.
create function private.agent_runs_handoff_activity()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.last_activity_at := greatest(old.last_activity_at, new.handoff_at);
  return new;
end
$$;
create trigger agent_runs_handoff_activity
  before update of handoff_at on public.agent_runs
  for each row when (new.handoff_at is not null and new.handoff_at is distinct from old.handoff_at)
  execute function private.agent_runs_handoff_activity();

-- Activity recorded in another table moves its run. security definer: the member posting a
-- message (or the worker recording an answer) has no right to update the run row or this
-- column, and must not get one; the function only ever raises the time of the run the new row
-- belongs to, in the row's own org (which that table's policy has already checked).
create function private.record_conversation_activity()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  activity_at timestamptz;
begin
  -- Each branch reads only its own table's columns (a record's fields resolve when run).
  if tg_table_name = 'run_attention' then
    activity_at := new.since;
  else
    activity_at := new.created_at;
  end if;
  update public.agent_runs
     set last_activity_at = activity_at
   where id = new.run_id and org_id = new.org_id and thread_key is not null and last_activity_at < activity_at;
  return null;
end
$$;

create trigger conversation_messages_activity
  after insert on public.conversation_messages
  for each row execute function private.record_conversation_activity();
create trigger run_events_answer_activity
  after insert on public.run_events
  for each row when (new.type = 'llm.completed' and coalesce(new.payload->>'content', '') <> '')
  execute function private.record_conversation_activity();
create trigger run_attention_activity
  after insert on public.run_attention
  for each row execute function private.record_conversation_activity();

revoke execute on function private.agent_runs_initial_activity() from public;
revoke execute on function private.agent_runs_handoff_activity() from public;
revoke execute on function private.record_conversation_activity() from public;

-- The list's keyset: (last_activity_at, id) newest first, per org, conversations only. It
-- replaces the one on the run's creation, which nothing else reads.
create index agent_runs_org_id_last_activity_idx
  on public.agent_runs (org_id, last_activity_at desc, id desc)
  where thread_key is not null;
drop index public.agent_runs_org_id_conversations_idx;
