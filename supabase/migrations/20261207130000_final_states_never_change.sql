-- A finished run never changes its outcome (issue 12, item 8). The statements that write
-- statuses are guarded (activities/agent-run/lifecycle.ts, activities/crm-sync.ts,
-- activities/knowledge/ingest.ts); these triggers are the backstop for any path that is not,
-- whoever runs it: a second execution of a workflow whose first one Temporal no longer holds
-- must not turn a `completed` run into `failed` twelve minutes after a client read it.

-- Agent runs (task runs and conversations): completed, failed and cancelled are final. What a
-- finished run reports (status, error, output, completion time) stays; usage counters may
-- still be settled.
create function private.agent_runs_keep_final_state()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.status in ('completed', 'failed', 'cancelled')
     and (new.status, new.error, new.output, new.completed_at) is distinct from (old.status, old.error, old.output, old.completed_at) then
    raise exception 'agent run % has finished (%); its outcome never changes', old.id, old.status
      using errcode = 'check_violation', constraint = 'agent_runs_final_state';
  end if;
  return new;
end
$$;

create trigger agent_runs_keep_final_state
  before update of status, error, output, completed_at on public.agent_runs
  for each row execute function private.agent_runs_keep_final_state();

-- CRM syncs: completed and failed are final.
create function private.crm_sync_runs_keep_final_state()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.status in ('completed', 'failed')
     and (new.status, new.error, new.finished_at) is distinct from (old.status, old.error, old.finished_at) then
    raise exception 'sync run % has finished (%); its outcome never changes', old.id, old.status
      using errcode = 'check_violation', constraint = 'crm_sync_runs_final_state';
  end if;
  return new;
end
$$;

create trigger crm_sync_runs_keep_final_state
  before update of status, error, finished_at on public.crm_sync_runs
  for each row execute function private.crm_sync_runs_keep_final_state();

-- Knowledge ingests: a document's revision ends ready or failed, and that outcome stays; a
-- new revision (an edit) starts a new ingest from pending.
create function private.knowledge_documents_keep_final_state()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.revision = old.revision and old.status in ('ready', 'failed') and new.status is distinct from old.status then
    raise exception 'knowledge document % revision % has finished ingesting (%); its outcome never changes', old.id, old.revision, old.status
      using errcode = 'check_violation', constraint = 'knowledge_documents_final_state';
  end if;
  return new;
end
$$;

create trigger knowledge_documents_keep_final_state
  before update of status on public.knowledge_documents
  for each row execute function private.knowledge_documents_keep_final_state();

revoke execute on function private.agent_runs_keep_final_state() from public;
revoke execute on function private.crm_sync_runs_keep_final_state() from public;
revoke execute on function private.knowledge_documents_keep_final_state() from public;
