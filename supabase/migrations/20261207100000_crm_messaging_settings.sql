-- How the agent's replies reach a connection's lead threads (docs/crm.md "Replies").
--
-- HubSpot has no bot sender for the Conversations API, so a connection names the dedicated
-- HubSpot user the agent writes as (`A-<userId>`). Kommo's `send_message` spends a small
-- monthly quota that depends on the account's plan, which the API does not tell us, so the admin
-- states it; beyond it (or where the add-on is missing) a Salesbot that sends a lead custom
-- field's value takes over. One row per connection, written by admins, read by the org's worker.
create table public.crm_messaging_settings (
  org_id uuid not null,
  connection_id uuid primary key,
  hubspot_sender_actor_id text check (hubspot_sender_actor_id ~ '^A-[0-9]{1,20}$'),
  kommo_salesbot_id text check (kommo_salesbot_id ~ '^[0-9]{1,20}$'),
  kommo_reply_field_id text check (kommo_reply_field_id ~ '^[0-9]{1,20}$'),
  -- send_message calls per calendar month (UTC); null: no quota is counted.
  kommo_monthly_quota integer check (kommo_monthly_quota between 0 and 10000000),
  quota_warn_percent smallint not null default 80 check (quota_warn_percent between 1 and 100),
  -- The month (first day) for which the quota warning was raised: it is raised once per month.
  quota_warned_month date,
  updated_at timestamptz not null default now(),
  check ((kommo_salesbot_id is null) = (kommo_reply_field_id is null)),
  foreign key (org_id, connection_id) references public.crm_connections (org_id, id) on delete cascade
);
create index crm_messaging_settings_org_id_idx on public.crm_messaging_settings (org_id);

alter table public.crm_messaging_settings enable row level security;
alter table public.crm_messaging_settings force row level security;

revoke all on public.crm_messaging_settings from public, anon, authenticated;
grant all on public.crm_messaging_settings to service_role;
grant select on public.crm_messaging_settings to authenticated;
grant insert (org_id, connection_id, hubspot_sender_actor_id, kommo_salesbot_id, kommo_reply_field_id, kommo_monthly_quota, quota_warn_percent)
  on public.crm_messaging_settings to authenticated;
grant update (hubspot_sender_actor_id, kommo_salesbot_id, kommo_reply_field_id, kommo_monthly_quota, quota_warn_percent, quota_warned_month, updated_at)
  on public.crm_messaging_settings to authenticated;

create policy crm_messaging_settings_select_admin_or_worker on public.crm_messaging_settings
  for select to authenticated
  using (org_id in (select private.org_ids_for('admin')) or org_id = (select private.worker_org_id()));
create policy crm_messaging_settings_insert_admin on public.crm_messaging_settings
  for insert to authenticated with check (org_id in (select private.org_ids_for('admin')));
-- The worker updates the row only to note the month's quota warning.
create policy crm_messaging_settings_update_admin_or_worker on public.crm_messaging_settings
  for update to authenticated
  using (org_id in (select private.org_ids_for('admin')) or org_id = (select private.worker_org_id()))
  with check (org_id in (select private.org_ids_for('admin')) or org_id = (select private.worker_org_id()));

-- A reply part that Kommo refused for quota or plan is sent again through the Salesbot: the
-- ledger row follows it, so a retry after a crash reads the thread back for the bot's message.
grant update (route) on public.crm_reply_sends to authenticated;
-- Counting a connection's send_message replies this month reads the ledger by time.
create index crm_reply_sends_org_id_sent_at_idx on public.crm_reply_sends (org_id, sent_at) where route = 'kommo_talk' and status = 'sent';
