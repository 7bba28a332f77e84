-- People learn when they are needed: org events, signed webhooks to the org's endpoints, and the
-- live feed consoles read (docs/api.md "Org events and webhooks").
--
-- * org_events: one row per event (approval.requested, handoff.requested, run.failed,
--   reply.failed). The id is derived from the event's cause by the worker, so recording it twice
--   (an activity retried after a crash) inserts one row. `seq` numbers the org's events in commit
--   order (the insert takes a per-org transaction lock), so the SSE feed resumes from
--   Last-Event-ID without skipping an event that committed late. Members read them; only the
--   org's worker writes them.
-- * webhook_endpoints: where an org wants its events; admins manage them. The signing secret is
--   an AES-256-GCM envelope (lib/crypto.ts, AAD bound to org, endpoint and column), shown once.
-- * webhook_deliveries / webhook_delivery_attempts: one delivery per (event, endpoint), carried
--   out by a Temporal workflow; each attempt is logged for the API.

create table public.org_events (
  id uuid primary key,
  org_id uuid not null references public.organizations (id) on delete cascade,
  seq bigint not null check (seq > 0),
  type text not null check (type in ('approval.requested', 'handoff.requested', 'run.failed', 'reply.failed')),
  payload jsonb not null default '{}'::jsonb check (jsonb_typeof(payload) = 'object'),
  created_at timestamptz not null default now(),
  unique (org_id, seq)
);

create table public.webhook_endpoints (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  url text not null check (char_length(url) between 1 and 2048),
  description text check (char_length(description) <= 200),
  -- Event types this endpoint receives; empty means all of them.
  event_types text[] not null default '{}',
  secret text not null check (secret like 'v1.%'),
  created_by uuid,
  created_at timestamptz not null default now(),
  unique (org_id, id)
);
create index webhook_endpoints_org_id_idx on public.webhook_endpoints (org_id);

create table public.webhook_deliveries (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  endpoint_id uuid not null,
  event_id uuid not null references public.org_events (id) on delete cascade,
  status text not null default 'pending' check (status in ('pending', 'delivered', 'failed')),
  attempts integer not null default 0 check (attempts >= 0),
  last_status_code integer,
  last_error text check (char_length(last_error) <= 500),
  next_attempt_at timestamptz,
  delivered_at timestamptz,
  created_at timestamptz not null default now(),
  unique (endpoint_id, event_id),
  unique (org_id, id),
  foreign key (org_id, endpoint_id) references public.webhook_endpoints (org_id, id) on delete cascade
);
create index webhook_deliveries_org_id_endpoint_id_idx on public.webhook_deliveries (org_id, endpoint_id, created_at desc);
create index webhook_deliveries_event_id_idx on public.webhook_deliveries (event_id);

create table public.webhook_delivery_attempts (
  org_id uuid not null,
  delivery_id uuid not null,
  attempt integer not null check (attempt > 0),
  status_code integer,
  error text check (char_length(error) <= 500),
  duration_ms integer not null check (duration_ms >= 0),
  attempted_at timestamptz not null default now(),
  primary key (delivery_id, attempt),
  foreign key (org_id, delivery_id) references public.webhook_deliveries (org_id, id) on delete cascade
);
create index webhook_delivery_attempts_org_id_idx on public.webhook_delivery_attempts (org_id, delivery_id);

-- Consoles follow the feed through one LISTEN per API process: `org_id:seq`, at commit.
create function private.notify_org_event() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform pg_notify('org_events', new.org_id::text || ':' || new.seq::text);
  return null;
end
$$;
revoke execute on function private.notify_org_event() from public;
create trigger org_events_notify after insert on public.org_events
  for each row execute function private.notify_org_event();

-- Endpoint changes are security-relevant (they decide where tenant events go): audited in the
-- transaction that makes them, like the other audited tables (private.append_audit).
create function private.audit_webhook_endpoint() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    perform private.append_audit(new.org_id, 'webhook_endpoint.created', 'webhook_endpoint', new.id::text, jsonb_build_object('url', new.url, 'eventTypes', new.event_types));
  elsif tg_op = 'DELETE' then
    perform private.append_audit(old.org_id, 'webhook_endpoint.deleted', 'webhook_endpoint', old.id::text, jsonb_build_object('url', old.url));
  end if;
  return null;
end
$$;
revoke execute on function private.audit_webhook_endpoint() from public, anon, authenticated;
create trigger webhook_endpoints_audit after insert or delete on public.webhook_endpoints
  for each row execute function private.audit_webhook_endpoint();

alter table public.org_events enable row level security;
alter table public.org_events force row level security;
alter table public.webhook_endpoints enable row level security;
alter table public.webhook_endpoints force row level security;
alter table public.webhook_deliveries enable row level security;
alter table public.webhook_deliveries force row level security;
alter table public.webhook_delivery_attempts enable row level security;
alter table public.webhook_delivery_attempts force row level security;

revoke all on public.org_events, public.webhook_endpoints, public.webhook_deliveries, public.webhook_delivery_attempts from public, anon, authenticated;
grant all on public.org_events, public.webhook_endpoints, public.webhook_deliveries, public.webhook_delivery_attempts to service_role;
grant select, insert on public.org_events to authenticated;
grant select, insert, delete on public.webhook_endpoints to authenticated;
grant select, insert on public.webhook_deliveries to authenticated;
grant update (status, attempts, last_status_code, last_error, next_attempt_at, delivered_at) on public.webhook_deliveries to authenticated;
grant select, insert on public.webhook_delivery_attempts to authenticated;
grant update (status_code, error, duration_ms, attempted_at) on public.webhook_delivery_attempts to authenticated;

-- Events: the org's people read them (the live feed); only the org's worker records them.
create policy org_events_select_member_or_worker on public.org_events
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')) or org_id = (select private.worker_org_id()));
create policy org_events_insert_worker on public.org_events
  for insert to authenticated with check (org_id = (select private.worker_org_id()));

-- Endpoints hold a signing secret (encrypted) and decide where events go: admins only; the
-- worker reads them to deliver.
create policy webhook_endpoints_select_admin_or_worker on public.webhook_endpoints
  for select to authenticated
  using (org_id in (select private.org_ids_for('admin')) or org_id = (select private.worker_org_id()));
create policy webhook_endpoints_insert_admin on public.webhook_endpoints
  for insert to authenticated with check (org_id in (select private.org_ids_for('admin')));
create policy webhook_endpoints_delete_admin on public.webhook_endpoints
  for delete to authenticated using (org_id in (select private.org_ids_for('admin')));

-- Deliveries and their attempts: admins read the log; the worker writes it.
create policy webhook_deliveries_select_admin_or_worker on public.webhook_deliveries
  for select to authenticated
  using (org_id in (select private.org_ids_for('admin')) or org_id = (select private.worker_org_id()));
create policy webhook_deliveries_insert_worker on public.webhook_deliveries
  for insert to authenticated with check (org_id = (select private.worker_org_id()));
create policy webhook_deliveries_update_worker on public.webhook_deliveries
  for update to authenticated
  using (org_id = (select private.worker_org_id())) with check (org_id = (select private.worker_org_id()));

create policy webhook_delivery_attempts_select_admin_or_worker on public.webhook_delivery_attempts
  for select to authenticated
  using (org_id in (select private.org_ids_for('admin')) or org_id = (select private.worker_org_id()));
create policy webhook_delivery_attempts_insert_worker on public.webhook_delivery_attempts
  for insert to authenticated with check (org_id = (select private.worker_org_id()));
create policy webhook_delivery_attempts_update_worker on public.webhook_delivery_attempts
  for update to authenticated
  using (org_id = (select private.worker_org_id())) with check (org_id = (select private.worker_org_id()));
