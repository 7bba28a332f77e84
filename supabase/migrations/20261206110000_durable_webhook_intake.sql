-- Durable CRM webhook intake (issue 11, part 1). The intake request now only verifies, records
-- and hands over: public.crm_webhook_deliveries becomes the queue the per-connection `crmIntake`
-- workflow drains. So a delivery row must hold everything the CRM will not tell us again:
-- `payload` keeps a chat message's text (Kommo delivers it once), the message a HubSpot event
-- names, and whether the change moved a deal into a stage. `seq` orders processing (a lead's
-- messages reach the conversation in the order the CRM sent them); `error` says why an event
-- was given up (the CRM rejected the read), so "processed" never hides a failure.
alter table public.crm_webhook_deliveries
  add column seq bigint generated always as identity,
  add column payload jsonb not null default '{}'::jsonb check (jsonb_typeof(payload) = 'object'),
  add column error text check (error is null or char_length(error) <= 1000);

-- What the workflow reads on every wake-up: the connection's open deliveries, oldest first.
create index crm_webhook_deliveries_pending_idx on public.crm_webhook_deliveries (connection_id, seq) where processed_at is null;

grant insert (payload) on public.crm_webhook_deliveries to authenticated;
grant update (error) on public.crm_webhook_deliveries to authenticated;
