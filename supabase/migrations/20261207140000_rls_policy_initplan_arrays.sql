-- Agent runs and run events: the members' read policies as an array the planner can use.
--
-- `org_id in (select private.org_ids_for('member'))` already ran the helper once per statement,
-- but the planner turned it into a hashed SubPlan probed for every row the scan returned: a
-- count of an org's 100k runs probed the hash 100k times (2.6× the service_role query in
-- `npm run bench:rls`). As `org_id = any (array(select …))` the helper still runs once (an
-- InitPlan), and the condition is an ordinary `= any ($param)` on org_id that btree indexes
-- leading with org_id take as an index condition, merged with the query's own `org_id = $1`:
-- no per-row filter is left. Same rows: a null org id matches nothing either way, an empty set
-- matches nothing either way.
--
-- Only the select policies change: writes check one row and keep the shape every other policy has.

drop policy agent_runs_select_member on public.agent_runs;
create policy agent_runs_select_member on public.agent_runs
  for select to authenticated
  using (org_id = any (array(select private.org_ids_for('member'))));

drop policy run_events_select_member on public.run_events;
create policy run_events_select_member on public.run_events
  for select to authenticated
  using (org_id = any (array(select private.org_ids_for('member'))));
