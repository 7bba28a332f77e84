-- CRM integration: connections to Kommo/HubSpot, their encrypted credentials, OAuth states,
-- synced records, sync runs and checkpoints, webhook deliveries and the per-connection rate
-- budget shared by syncs and agent tools.
--
-- Who does what:
--   * admins create, change and delete connections (and start their OAuth flow);
--   * members read connections (never credentials), records and sync history;
--   * the org's worker principal syncs (records, runs, checkpoints), refreshes tokens, records
--     webhook deliveries and spends the rate budget. Unauthenticated entry points (the OAuth
--     callback, webhook intake) resolve their org through two narrow functions executable by the
--     login role only, then act as that org's worker.
-- Secrets are stored as AES-256-GCM envelopes (lib/crypto.ts) or as SHA-256 hashes; nothing in
-- this schema holds a plaintext token.

create table public.crm_connections (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  provider text not null check (provider in ('kommo', 'hubspot')),
  name text not null check (char_length(name) between 1 and 200),
  auth_kind text not null check (auth_kind in ('oauth', 'token')),
  status text not null default 'pending' check (status in ('pending', 'active', 'error', 'revoked')),
  -- Kommo: https://{subdomain}.kommo.com, learnt from the OAuth callback's `referer`; HubSpot: the API host.
  api_base_url text check (char_length(api_base_url) <= 500),
  external_account_id text check (char_length(external_account_id) <= 200),
  last_error jsonb,
  -- SHA-256 of the secret in this connection's webhook URL (Kommo signs nothing).
  webhook_secret_hash text check (webhook_secret_hash ~ '^[0-9a-f]{64}$'),
  -- The connection's sync schedule as the API accepted it; Temporal holds the live Schedule.
  schedule jsonb,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (org_id, id)
);

create table public.crm_credentials (
  org_id uuid not null,
  connection_id uuid primary key,
  access_token text not null check (access_token like 'v1.%'),
  refresh_token text check (refresh_token like 'v1.%'),
  access_token_expires_at timestamptz,
  -- Bumped by every refresh: a refresher that lost the race sees a newer version and reuses it.
  version int not null default 1,
  updated_at timestamptz not null default now(),
  foreign key (org_id, connection_id) references public.crm_connections (org_id, id) on delete cascade
);
create index crm_credentials_org_id_idx on public.crm_credentials (org_id);

create table public.oauth_states (
  -- SHA-256 of the `state` we sent; the state itself is only ever in the user's browser.
  state_hash text primary key check (state_hash ~ '^[0-9a-f]{64}$'),
  org_id uuid not null,
  connection_id uuid not null,
  created_by uuid,
  expires_at timestamptz not null,
  created_at timestamptz not null default now(),
  foreign key (org_id, connection_id) references public.crm_connections (org_id, id) on delete cascade
);
create index oauth_states_org_id_connection_id_idx on public.oauth_states (org_id, connection_id);

create table public.crm_records (
  org_id uuid not null,
  connection_id uuid not null,
  object_type text not null check (object_type in ('pipelines', 'users', 'companies', 'contacts', 'deals')),
  external_id text not null check (char_length(external_id) between 1 and 100),
  name text,
  email text,
  pipeline_id text,
  stage_id text,
  owner_id text,
  properties jsonb not null default '{}'::jsonb,
  remote_updated_at timestamptz,
  deleted_at timestamptz,
  -- The full sync that last saw this record; records a full sync did not see become tombstones.
  seen_run_id uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (connection_id, object_type, external_id),
  foreign key (org_id, connection_id) references public.crm_connections (org_id, id) on delete cascade
);
-- Serves the records API (by type, keyset on connection + external id) and the policy filter.
create index crm_records_org_id_type_idx on public.crm_records (org_id, object_type, connection_id, external_id);

create table public.crm_sync_runs (
  id uuid primary key,
  org_id uuid not null,
  connection_id uuid not null,
  mode text not null check (mode in ('incremental', 'full')),
  trigger text not null default 'manual' check (trigger in ('manual', 'schedule', 'api')),
  status text not null default 'running' check (status in ('running', 'completed', 'failed')),
  workflow_id text not null,
  added int not null default 0,
  updated int not null default 0,
  deleted int not null default 0,
  failed int not null default 0,
  pages int not null default 0,
  progress jsonb not null default '{}'::jsonb,
  error jsonb,
  started_at timestamptz not null default now(),
  finished_at timestamptz,
  unique (org_id, id),
  foreign key (org_id, connection_id) references public.crm_connections (org_id, id) on delete cascade
);
create index crm_sync_runs_org_id_connection_id_idx on public.crm_sync_runs (org_id, connection_id, started_at desc, id desc);

-- Watermarks and checkpoints, one row per (connection, object type). `cursor` belongs to
-- `run_id`: a crashed run resumes from it, a new run starts over.
create table public.crm_sync_state (
  org_id uuid not null,
  connection_id uuid not null,
  object_type text not null,
  watermark timestamptz,
  run_id uuid,
  phase text not null default 'records' check (phase in ('records', 'deletions', 'done')),
  cursor text,
  updated_at timestamptz not null default now(),
  primary key (connection_id, object_type),
  foreign key (org_id, connection_id) references public.crm_connections (org_id, id) on delete cascade
);
create index crm_sync_state_org_id_idx on public.crm_sync_state (org_id, connection_id);

create table public.crm_webhook_deliveries (
  org_id uuid not null,
  connection_id uuid not null,
  dedupe_key text not null check (char_length(dedupe_key) between 1 and 300),
  kind text not null,
  object_type text not null,
  external_id text not null,
  change text not null check (change in ('upsert', 'delete')),
  received_at timestamptz not null default now(),
  processed_at timestamptz,
  primary key (connection_id, dedupe_key),
  foreign key (org_id, connection_id) references public.crm_connections (org_id, id) on delete cascade
);
create index crm_webhook_deliveries_org_id_idx on public.crm_webhook_deliveries (org_id, connection_id, received_at desc);

-- A token bucket per connection. `tokens` may go negative: a caller reserves its slot and waits
-- until the bucket has refilled to it, which queues syncs and agent calls fairly.
create table public.crm_rate_buckets (
  org_id uuid not null,
  connection_id uuid primary key,
  capacity double precision not null check (capacity >= 1),
  refill_per_second double precision not null check (refill_per_second > 0),
  tokens double precision not null,
  refilled_at timestamptz not null default clock_timestamp(),
  blocked_until timestamptz,
  foreign key (org_id, connection_id) references public.crm_connections (org_id, id) on delete cascade
);
create index crm_rate_buckets_org_id_idx on public.crm_rate_buckets (org_id, connection_id);

create trigger crm_connections_touch_updated_at before update on public.crm_connections
  for each row execute function private.touch_updated_at();
create trigger crm_credentials_touch_updated_at before update on public.crm_credentials
  for each row execute function private.touch_updated_at();
create trigger crm_records_touch_updated_at before update on public.crm_records
  for each row execute function private.touch_updated_at();
create trigger crm_sync_state_touch_updated_at before update on public.crm_sync_state
  for each row execute function private.touch_updated_at();

-- Entry points without a principal --------------------------------------------------------------------
-- Like private.authenticate_api_key: executable by the login role only, each answers one narrow
-- question for a caller who proves knowledge of an unguessable value.

-- Webhook intake: which org and provider a connection id belongs to, and its URL secret's hash.
create function private.crm_webhook_target(target_connection uuid)
returns table (org_id uuid, provider text, webhook_secret_hash text, status text)
language sql
stable
security definer
set search_path = ''
as $$
  select c.org_id, c.provider, c.webhook_secret_hash, c.status
  from public.crm_connections c where c.id = target_connection
$$;

-- OAuth callback: consumes a state (single use) and answers what it was issued for.
create function private.take_crm_oauth_state(presented_hash text)
returns table (org_id uuid, connection_id uuid, created_by uuid, expired boolean)
language sql
volatile
security definer
set search_path = ''
as $$
  delete from public.oauth_states s where s.state_hash = presented_hash
  returning s.org_id, s.connection_id, s.created_by, s.expires_at < now()
$$;

revoke execute on function private.crm_webhook_target(uuid), private.take_crm_oauth_state(text) from public, anon, authenticated;
grant execute on function private.crm_webhook_target(uuid), private.take_crm_oauth_state(text) to authenticator;

-- Row-level security --------------------------------------------------------------------------------

alter table public.crm_connections enable row level security;
alter table public.crm_connections force row level security;
alter table public.crm_credentials enable row level security;
alter table public.crm_credentials force row level security;
alter table public.oauth_states enable row level security;
alter table public.oauth_states force row level security;
alter table public.crm_records enable row level security;
alter table public.crm_records force row level security;
alter table public.crm_sync_runs enable row level security;
alter table public.crm_sync_runs force row level security;
alter table public.crm_sync_state enable row level security;
alter table public.crm_sync_state force row level security;
alter table public.crm_webhook_deliveries enable row level security;
alter table public.crm_webhook_deliveries force row level security;
alter table public.crm_rate_buckets enable row level security;
alter table public.crm_rate_buckets force row level security;

-- Privileges ----------------------------------------------------------------------------------------

revoke all on public.crm_connections, public.crm_credentials, public.oauth_states, public.crm_records,
  public.crm_sync_runs, public.crm_sync_state, public.crm_webhook_deliveries, public.crm_rate_buckets
  from public, anon, authenticated;
grant all on public.crm_connections, public.crm_credentials, public.oauth_states, public.crm_records,
  public.crm_sync_runs, public.crm_sync_state, public.crm_webhook_deliveries, public.crm_rate_buckets
  to service_role;

grant select, delete on public.crm_connections to authenticated;
grant insert (org_id, provider, name, auth_kind, status, api_base_url, webhook_secret_hash, created_by) on public.crm_connections to authenticated;
grant update (name, status, api_base_url, external_account_id, last_error, schedule) on public.crm_connections to authenticated;

grant select, insert, delete on public.crm_credentials to authenticated;
grant update (access_token, refresh_token, access_token_expires_at, version) on public.crm_credentials to authenticated;

grant select, insert, delete on public.oauth_states to authenticated;

grant select on public.crm_records to authenticated;
grant insert (org_id, connection_id, object_type, external_id, name, email, pipeline_id, stage_id, owner_id, properties, remote_updated_at, deleted_at, seen_run_id)
  on public.crm_records to authenticated;
grant update (name, email, pipeline_id, stage_id, owner_id, properties, remote_updated_at, deleted_at, seen_run_id) on public.crm_records to authenticated;

grant select on public.crm_sync_runs to authenticated;
grant insert (id, org_id, connection_id, mode, trigger, status, workflow_id) on public.crm_sync_runs to authenticated;
grant update (status, added, updated, deleted, failed, pages, progress, error, finished_at) on public.crm_sync_runs to authenticated;

grant select on public.crm_sync_state to authenticated;
grant insert (org_id, connection_id, object_type, watermark, run_id, phase, cursor) on public.crm_sync_state to authenticated;
grant update (watermark, run_id, phase, cursor) on public.crm_sync_state to authenticated;

grant select on public.crm_webhook_deliveries to authenticated;
grant insert (org_id, connection_id, dedupe_key, kind, object_type, external_id, change) on public.crm_webhook_deliveries to authenticated;
grant update (processed_at) on public.crm_webhook_deliveries to authenticated;

grant select on public.crm_rate_buckets to authenticated;
grant insert (org_id, connection_id, capacity, refill_per_second, tokens) on public.crm_rate_buckets to authenticated;
grant update (capacity, refill_per_second, tokens, refilled_at, blocked_until) on public.crm_rate_buckets to authenticated;

-- Policies ------------------------------------------------------------------------------------------

create policy crm_connections_select_member on public.crm_connections
  for select to authenticated using (org_id in (select private.org_ids_for('member')));
create policy crm_connections_insert_admin on public.crm_connections
  for insert to authenticated with check (org_id in (select private.org_ids_for('admin')));
-- Workers record status and errors (a revoked grant, the account id learnt from the provider).
create policy crm_connections_update_admin_or_worker on public.crm_connections
  for update to authenticated
  using (org_id in (select private.org_ids_for('admin')) or org_id = (select private.worker_org_id()))
  with check (org_id in (select private.org_ids_for('admin')) or org_id = (select private.worker_org_id()));
create policy crm_connections_delete_admin on public.crm_connections
  for delete to authenticated using (org_id in (select private.org_ids_for('admin')));

-- Credentials: never readable by members; admins write them (private-app tokens, testing a
-- connection), workers refresh them.
create policy crm_credentials_all_admin_or_worker on public.crm_credentials
  for all to authenticated
  using (org_id in (select private.org_ids_for('admin')) or org_id = (select private.worker_org_id()))
  with check (org_id in (select private.org_ids_for('admin')) or org_id = (select private.worker_org_id()));

create policy oauth_states_all_admin on public.oauth_states
  for all to authenticated
  using (org_id in (select private.org_ids_for('admin')))
  with check (org_id in (select private.org_ids_for('admin')));

create policy crm_records_select_member on public.crm_records
  for select to authenticated using (org_id in (select private.org_ids_for('member')));
create policy crm_records_insert_worker on public.crm_records
  for insert to authenticated with check (org_id = (select private.worker_org_id()));
create policy crm_records_update_worker on public.crm_records
  for update to authenticated
  using (org_id = (select private.worker_org_id())) with check (org_id = (select private.worker_org_id()));

create policy crm_sync_runs_select_member on public.crm_sync_runs
  for select to authenticated using (org_id in (select private.org_ids_for('member')));
create policy crm_sync_runs_insert_worker on public.crm_sync_runs
  for insert to authenticated with check (org_id = (select private.worker_org_id()));
create policy crm_sync_runs_update_worker on public.crm_sync_runs
  for update to authenticated
  using (org_id = (select private.worker_org_id())) with check (org_id = (select private.worker_org_id()));

create policy crm_sync_state_select_member on public.crm_sync_state
  for select to authenticated using (org_id in (select private.org_ids_for('member')));
create policy crm_sync_state_insert_worker on public.crm_sync_state
  for insert to authenticated with check (org_id = (select private.worker_org_id()));
create policy crm_sync_state_update_worker on public.crm_sync_state
  for update to authenticated
  using (org_id = (select private.worker_org_id())) with check (org_id = (select private.worker_org_id()));

create policy crm_webhook_deliveries_select_admin_or_worker on public.crm_webhook_deliveries
  for select to authenticated
  using (org_id in (select private.org_ids_for('admin')) or org_id = (select private.worker_org_id()));
create policy crm_webhook_deliveries_insert_worker on public.crm_webhook_deliveries
  for insert to authenticated with check (org_id = (select private.worker_org_id()));
create policy crm_webhook_deliveries_update_worker on public.crm_webhook_deliveries
  for update to authenticated
  using (org_id = (select private.worker_org_id())) with check (org_id = (select private.worker_org_id()));

create policy crm_rate_buckets_select_admin_or_worker on public.crm_rate_buckets
  for select to authenticated
  using (org_id in (select private.org_ids_for('admin')) or org_id = (select private.worker_org_id()));
create policy crm_rate_buckets_insert_worker on public.crm_rate_buckets
  for insert to authenticated with check (org_id = (select private.worker_org_id()));
create policy crm_rate_buckets_update_worker on public.crm_rate_buckets
  for update to authenticated
  using (org_id = (select private.worker_org_id())) with check (org_id = (select private.worker_org_id()));
