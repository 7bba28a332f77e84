-- Starting a run's workflow happens after the row commits, outside any transaction (a Temporal
-- call must never hold a pooled connection). `dispatched_at` records that Temporal accepted the
-- start; a run row without it is picked up by the dispatcher (api/services/run-dispatch.ts),
-- which starts the workflow idempotently under its deterministic id `agent-run:<id>`.
-- `dispatch_claimed_at` is the dispatcher's lease, so several API processes share the work.

alter table public.agent_runs
  add column dispatched_at timestamptz,
  add column dispatch_claimed_at timestamptz;

-- Every run that exists before this migration was started inside its insert's transaction.
update public.agent_runs set dispatched_at = created_at;

-- The dispatcher's scan: task runs (conversations are started by each message's
-- update-with-start) that Temporal has not confirmed.
create index agent_runs_undispatched_idx on public.agent_runs (created_at)
  where dispatched_at is null and thread_key is null;

-- The API marks its own runs as the org's worker (agent_runs_update_worker).
grant update (dispatched_at) on public.agent_runs to authenticated;

-- Claims up to `max_runs` undispatched task runs older than `grace_seconds` whose lease has run
-- out, across orgs: the dispatcher acts for the whole installation, and it learns ids only, never
-- tenant data. The lease keeps concurrent dispatchers from starting the same run twice at once
-- (starting twice would be harmless; it is the wasted call that is avoided). `only_org` narrows
-- a sweep to one organization (an operator's targeted repair; tests that share a database).
create function private.claim_undispatched_agent_runs(grace_seconds int, lease_seconds int, max_runs int, only_org uuid default null)
returns table (run_id uuid, org_id uuid, agent_id uuid)
language sql
volatile
security definer
set search_path = ''
as $$
  update public.agent_runs r set dispatch_claimed_at = now()
   where r.id in (
     select c.id from public.agent_runs c
      where c.dispatched_at is null and c.thread_key is null
        and c.status not in ('completed', 'failed', 'cancelled')
        and (only_org is null or c.org_id = only_org)
        and c.created_at < now() - make_interval(secs => grace_seconds)
        and (c.dispatch_claimed_at is null or c.dispatch_claimed_at < now() - make_interval(secs => lease_seconds))
      order by c.created_at
      limit max_runs
      for update skip locked)
  returning r.id, r.org_id, r.agent_id
$$;

revoke execute on function private.claim_undispatched_agent_runs(int, int, int, uuid) from public, anon, authenticated;
grant execute on function private.claim_undispatched_agent_runs(int, int, int, uuid) to authenticator;
