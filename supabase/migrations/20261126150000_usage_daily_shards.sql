-- usage_daily: one row per (org, day, shard) instead of one per (org, day).
--
-- Every LLM turn and every run start of an org added to the same row, and a row lock is held
-- until COMMIT has flushed the WAL. An org with many runs at once (a stage trigger firing for 200
-- leads) therefore queued all its LLM turns on that one row: measured with pg_stat_statements in
-- `npm run bench`, the statement that records a turn averaged 358 ms, almost all of it waiting
-- for the lock. A run now counts into one of 8 shards chosen by its id, so at most an eighth of
-- the org's runs meet on a row. The increments stay atomic, in the transaction that records the
-- event; readers add the shards of a day up.

alter table public.usage_daily add column shard smallint not null default 0 check (shard between 0 and 7);
alter table public.usage_daily drop constraint usage_daily_pkey;
alter table public.usage_daily add primary key (org_id, day, shard);

grant insert (shard) on public.usage_daily to authenticated;

-- The shard a run counts into. Stable for a run, spread evenly over runs.
create or replace function private.usage_shard(run_id uuid)
returns smallint
language sql
immutable
parallel safe
as $$ select (hashtext(run_id::text) & 7)::smallint $$;

revoke execute on function private.usage_shard(uuid) from public, anon;
grant execute on function private.usage_shard(uuid) to authenticated;
