-- The conversations list pushed live (GET /v1/orgs/:orgId/conversations/events): at commit,
-- `org_id:run_id` on the `conversation_activity` channel whenever what the list shows of a
-- conversation changes: it starts, gets activity (last_activity_at), changes status, is handed
-- off or resumed, or its flag is cleared (a flag being raised is activity already). The API's one
-- LISTEN connection fans it out to the org's open lists as a hint to read the first page again;
-- nothing but the run id travels, and the list itself is read under the member's RLS.
-- Postgres folds identical notifications of one transaction into one.

create function private.notify_conversation_activity() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_table_name = 'run_attention' then
    perform pg_notify('conversation_activity', old.org_id::text || ':' || old.run_id::text);
  else
    perform pg_notify('conversation_activity', new.org_id::text || ':' || new.id::text);
  end if;
  return null;
end
$$;
revoke execute on function private.notify_conversation_activity() from public;

create trigger agent_runs_conversation_started
  after insert on public.agent_runs
  for each row when (new.thread_key is not null)
  execute function private.notify_conversation_activity();
create trigger agent_runs_conversation_changed
  after update of last_activity_at, status, handoff_until on public.agent_runs
  for each row when (new.thread_key is not null
    and (new.last_activity_at, new.status, new.handoff_until) is distinct from (old.last_activity_at, old.status, old.handoff_until))
  execute function private.notify_conversation_activity();
create trigger run_attention_cleared
  after delete on public.run_attention
  for each row execute function private.notify_conversation_activity();
