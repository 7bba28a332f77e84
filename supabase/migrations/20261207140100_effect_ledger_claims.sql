-- The effect ledger claims a key before the external call and completes it after, in two short
-- transactions, so no transaction (nor its pooled connection) is held open across a CRM call
-- (issue 17, item 4). A row with completed_at null is a claim: lease_until keeps a second,
-- concurrent attempt of the same activity waiting until the first finishes or its lease ends.
alter table public.effect_ledger
  add column completed_at timestamptz default now(),
  add column lease_until timestamptz;

grant insert (completed_at, lease_until) on public.effect_ledger to authenticated;
-- Only the completion columns: what the ledger records about an effect never changes after.
grant update (result, completed_at, lease_until) on public.effect_ledger to authenticated;

-- The worker of the org renews or completes its own open claims; a completed row is final.
create policy effect_ledger_update_worker on public.effect_ledger
  for update to authenticated
  using (org_id = (select private.worker_org_id()) and completed_at is null)
  with check (org_id = (select private.worker_org_id()));
