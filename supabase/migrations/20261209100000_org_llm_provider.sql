-- The org's own model (issue 15, item 4): an org may bring its own OpenAI-compatible provider
-- (base URL, API key, default model, embedding model); its runs and knowledge embeddings then use
-- it instead of the deployment's LLM_BASE_URL/LLM_API_KEY. docs/agent-runtime.md, "The org's own
-- model".
--
-- Split like crm_connections / crm_credentials, so the ciphertext is never readable by members:
-- * org_llm_providers: the settings people may see (members read them, admins write them), with a
--   hint of the key (its last four characters, only for keys long enough that four reveal
--   nothing useful) and when it last changed;
-- * org_llm_provider_keys: the key as an AES-256-GCM envelope (lib/crypto.ts, AAD bound to org,
--   row and column); admins write it, the org's worker reads it to call the provider.

create table public.org_llm_providers (
  org_id uuid primary key references public.organizations (id) on delete cascade,
  base_url text not null check (char_length(base_url) between 1 and 2048),
  default_model text not null check (char_length(default_model) between 1 and 200),
  embedding_model text check (char_length(embedding_model) between 1 and 200),
  key_hint text check (char_length(key_hint) <= 8),
  key_updated_at timestamptz not null default now(),
  updated_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table public.org_llm_provider_keys (
  org_id uuid primary key references public.org_llm_providers (org_id) on delete cascade,
  api_key text not null check (api_key like 'v1.%')
);

-- Where an org's model calls go is security-relevant (its key goes with them): audited in the
-- transaction that changes it. Never the key, nor its hint.
create function private.audit_llm_provider() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    perform private.append_audit(new.org_id, 'llm_provider.set', 'llm_provider', new.org_id::text,
      jsonb_build_object('baseUrl', new.base_url, 'defaultModel', new.default_model, 'embeddingModel', new.embedding_model));
  elsif tg_op = 'UPDATE' then
    perform private.append_audit(new.org_id, 'llm_provider.updated', 'llm_provider', new.org_id::text,
      jsonb_build_object('baseUrl', new.base_url, 'defaultModel', new.default_model, 'embeddingModel', new.embedding_model,
                         'keyChanged', new.key_updated_at is distinct from old.key_updated_at));
  elsif tg_op = 'DELETE' then
    perform private.append_audit(old.org_id, 'llm_provider.deleted', 'llm_provider', old.org_id::text, jsonb_build_object('baseUrl', old.base_url));
  end if;
  return null;
end
$$;
revoke execute on function private.audit_llm_provider() from public, anon, authenticated;
create trigger org_llm_providers_audit after insert or update or delete on public.org_llm_providers
  for each row execute function private.audit_llm_provider();

alter table public.org_llm_providers enable row level security;
alter table public.org_llm_providers force row level security;
alter table public.org_llm_provider_keys enable row level security;
alter table public.org_llm_provider_keys force row level security;

revoke all on public.org_llm_providers, public.org_llm_provider_keys from public, anon, authenticated;
grant all on public.org_llm_providers, public.org_llm_provider_keys to service_role;
grant select, insert, update, delete on public.org_llm_providers, public.org_llm_provider_keys to authenticated;

create policy org_llm_providers_select_member_or_worker on public.org_llm_providers
  for select to authenticated
  using (org_id in (select private.org_ids_for('member')) or org_id = (select private.worker_org_id()));
create policy org_llm_providers_insert_admin on public.org_llm_providers
  for insert to authenticated with check (org_id in (select private.org_ids_for('admin')));
create policy org_llm_providers_update_admin on public.org_llm_providers
  for update to authenticated
  using (org_id in (select private.org_ids_for('admin'))) with check (org_id in (select private.org_ids_for('admin')));
create policy org_llm_providers_delete_admin on public.org_llm_providers
  for delete to authenticated using (org_id in (select private.org_ids_for('admin')));

-- The ciphertext: admins (who replace it) and the org's worker (which decrypts it to call the
-- provider); never members or member-scoped keys.
create policy org_llm_provider_keys_select_admin_or_worker on public.org_llm_provider_keys
  for select to authenticated
  using (org_id in (select private.org_ids_for('admin')) or org_id = (select private.worker_org_id()));
create policy org_llm_provider_keys_insert_admin on public.org_llm_provider_keys
  for insert to authenticated with check (org_id in (select private.org_ids_for('admin')));
create policy org_llm_provider_keys_update_admin on public.org_llm_provider_keys
  for update to authenticated
  using (org_id in (select private.org_ids_for('admin'))) with check (org_id in (select private.org_ids_for('admin')));
create policy org_llm_provider_keys_delete_admin on public.org_llm_provider_keys
  for delete to authenticated using (org_id in (select private.org_ids_for('admin')));
