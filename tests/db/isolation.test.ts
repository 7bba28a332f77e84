import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '../../lib/principal.js';
import {
  adminPool,
  appPool,
  attempt,
  createAgent,
  createOrgWithMembers,
  createRun,
  type OrgFixture,
} from '../support/db.js';

// Tenant isolation, checked for every table the catalog lists in public. A new table fails
// here until it declares how its rows belong to an org and what a hostile update would change.

type TenantTable = {
  /** The column holding the owning org's id. */
  tenantColumn: string;
  /** An assignment that would visibly change org A's rows if a cross-org update got through. */
  hijack: string;
  /** The lowest role of org A that reads these rows; members unless declared. */
  reader?: 'member' | 'admin';
};

const tenantTables: Record<string, TenantTable> = {
  organizations: { tenantColumn: 'id', hijack: `name = 'hijacked'` },
  organization_members: { tenantColumn: 'org_id', hijack: `role = 'owner'` },
  agents: { tenantColumn: 'org_id', hijack: `name = 'hijacked'` },
  agent_runs: { tenantColumn: 'org_id', hijack: `status = 'cancelled'` },
  run_events: { tenantColumn: 'org_id', hijack: `type = 'hijacked'` },
  invites: { tenantColumn: 'org_id', hijack: `revoked_at = now()`, reader: 'admin' },
  api_keys: { tenantColumn: 'org_id', hijack: `revoked_at = now()`, reader: 'admin' },
  audit_log: { tenantColumn: 'org_id', hijack: `action = 'hijacked.entry'`, reader: 'admin' },
  run_approvals: { tenantColumn: 'org_id', hijack: `status = 'approved'` },
  run_approval_responses: { tenantColumn: 'org_id', hijack: `decision = 'approve'` },
  effect_ledger: { tenantColumn: 'org_id', hijack: `result = '"hijacked"'::jsonb` },
  usage_daily: { tenantColumn: 'org_id', hijack: `runs = 999999` },
  knowledge_documents: { tenantColumn: 'org_id', hijack: `title = 'hijacked'` },
  knowledge_document_files: { tenantColumn: 'org_id', hijack: `revision = 99` },
  knowledge_chunks: { tenantColumn: 'org_id', hijack: `passage = 'hijacked'` },
  knowledge_terms: { tenantColumn: 'org_id', hijack: `compact = 'hijacked'` },
  knowledge_lexemes: { tenantColumn: 'org_id', hijack: `chunks = 999` },
  knowledge_vocabulary: { tenantColumn: 'org_id', hijack: `compact = 'hijacked'` },
  knowledge_vector_cells: { tenantColumn: 'org_id', hijack: `pivot = B'0000'` },
  conversation_messages: { tenantColumn: 'org_id', hijack: `content = 'hijacked'` },
  crm_reply_sends: { tenantColumn: 'org_id', hijack: `status = 'sent'` },
  run_attention: { tenantColumn: 'org_id', hijack: `detail = 'hijacked'` },
  crm_messaging_settings: { tenantColumn: 'org_id', hijack: `hubspot_sender_actor_id = 'A-666'`, reader: 'admin' },
  crm_connections: { tenantColumn: 'org_id', hijack: `name = 'hijacked'` },
  crm_credentials: { tenantColumn: 'org_id', hijack: `access_token = 'v1.hijacked'`, reader: 'admin' },
  oauth_states: { tenantColumn: 'org_id', hijack: `expires_at = now() + interval '1 year'`, reader: 'admin' },
  crm_records: { tenantColumn: 'org_id', hijack: `name = 'hijacked'` },
  crm_sync_runs: { tenantColumn: 'org_id', hijack: `status = 'failed'` },
  crm_sync_state: { tenantColumn: 'org_id', hijack: `cursor = 'hijacked'` },
  crm_webhook_deliveries: { tenantColumn: 'org_id', hijack: `processed_at = now()`, reader: 'admin' },
  crm_rate_buckets: { tenantColumn: 'org_id', hijack: `tokens = -1000`, reader: 'admin' },
  agent_trigger_firings: { tenantColumn: 'org_id', hijack: `fired_at = now() - interval '1 year'`, reader: 'admin' },
  org_events: { tenantColumn: 'org_id', hijack: `type = 'run.failed'` },
  webhook_endpoints: { tenantColumn: 'org_id', hijack: `url = 'https://attacker.example.com/'`, reader: 'admin' },
  webhook_deliveries: { tenantColumn: 'org_id', hijack: `status = 'delivered'`, reader: 'admin' },
  webhook_delivery_attempts: { tenantColumn: 'org_id', hijack: `error = 'hijacked'`, reader: 'admin' },
  lead_memories: { tenantColumn: 'org_id', hijack: `summary = 'hijacked'` },
  org_llm_providers: { tenantColumn: 'org_id', hijack: `base_url = 'https://attacker.example.com/v1'` },
  org_llm_provider_keys: { tenantColumn: 'org_id', hijack: `api_key = 'v1.hijacked'`, reader: 'admin' },
};

const admin = adminPool();
const app = appPool();

const { rows: catalogTables } = await admin.query<{ relname: string }>(`
  select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
  where n.nspname = 'public' and c.relkind in ('r', 'p') order by 1`);
const publicTables = catalogTables.map((row) => row.relname);

let orgA: OrgFixture;
let orgB: OrgFixture;
let agentA: string;
let agentB: string;
let runA: string;
let runB: string;

const user = (userId: string): Principal => ({ kind: 'user', userId });
const worker = (orgId: string): Principal => ({ kind: 'worker', orgId });
const anon: Principal = { kind: 'anon' };

beforeAll(async () => {
  orgA = await createOrgWithMembers(admin, ['owner', 'admin', 'member']);
  orgB = await createOrgWithMembers(admin, ['owner', 'member']);
  agentA = await createAgent(admin, orgA.orgId);
  agentB = await createAgent(admin, orgB.orgId);
  runA = await createRun(admin, orgA.orgId, agentA, { createdBy: orgA.userWithRole('member'), events: 2 });
  runB = await createRun(admin, orgB.orgId, agentB, { createdBy: orgB.userWithRole('member'), events: 1 });
  // Tenancy: an invite, an API key and an audit entry of org A.
  await admin.query(
    `insert into public.invites (org_id, email, role, token_hash, expires_at) values ($1, 'invitee@example.test', 'member', $2, now() + interval '1 day')`,
    [orgA.orgId, randomBytes(32)],
  );
  await admin.query(`insert into public.api_keys (org_id, name, prefix, key_hash) values ($1, 'isolation', $2, $3)`, [
    orgA.orgId,
    `gap_live_${randomUUID().replace(/-/g, '').slice(0, 8)}`,
    randomBytes(32),
  ]);
  await admin.query(`insert into public.audit_log (org_id, action) values ($1, 'isolation.fixture')`, [orgA.orgId]);
  // Agent runtime: an approval with a response, an effect, a usage day and a knowledge document of org A.
  const approvalA = randomUUID();
  await admin.query(
    `insert into public.run_approvals (id, org_id, run_id, seq, kind, tool_name, expires_at) values ($1, $2, $3, 2, 'approval', 'crm_add_note', now() + interval '1 hour')`,
    [approvalA, orgA.orgId, runA],
  );
  await admin.query(`insert into public.run_approval_responses (org_id, approval_id, author, decision) values ($1, $2, $3, 'reject')`, [
    orgA.orgId,
    approvalA,
    orgA.userWithRole('member'),
  ]);
  await admin.query(`insert into public.effect_ledger (org_id, idempotency_key, run_id, tool_name, result) values ($1, $2, $3, 'crm_add_note', '{"ok":true}')`, [
    orgA.orgId,
    `agent-run:${runA}:tool-3`,
    runA,
  ]);
  await admin.query(`insert into public.usage_daily (org_id, day, runs) values ($1, current_date, 1)`, [orgA.orgId]);
  const knowledgeA = await admin.query(`insert into public.knowledge_documents (org_id, title, body) values ($1, 'Isolation', 'org A only') returning id`, [orgA.orgId]);
  const documentA = knowledgeA.rows[0].id as string;
  await admin.query(`insert into public.knowledge_document_files (document_id, org_id, revision, content, sha256) values ($1, $2, 1, 'org A only', repeat('c', 64))`, [documentA, orgA.orgId]);
  await admin.query(`insert into public.knowledge_chunks (org_id, document_id, position, passage, language, search) values ($1, $2, 0, 'org A only', 'en', to_tsvector('english', 'org A only'))`, [orgA.orgId, documentA]);
  await admin.query(`insert into public.knowledge_terms (org_id, document_id, term, compact) values ($1, $2, 'only', 'only')`, [orgA.orgId, documentA]);
  await admin.query(`insert into public.knowledge_lexemes (org_id, document_id, language, lexeme, chunks) values ($1, $2, 'en', 'only', 1)`, [orgA.orgId, documentA]);
  await admin.query(`insert into public.knowledge_vocabulary (org_id, term, compact) values ($1, 'only', 'only')`, [orgA.orgId]);
  await admin.query(`insert into public.knowledge_vector_cells (org_id, embedding_model, cell, pivot) values ($1, 'only', 0, B'1010')`, [orgA.orgId]);
  await admin.query(`insert into public.conversation_messages (org_id, run_id, author, content) values ($1, $2, $3, 'org A message')`, [
    orgA.orgId,
    runA,
    orgA.userWithRole('member'),
  ]);
  // A reply of org A's run that was attempted, not yet confirmed sent.
  await admin.query(`insert into public.crm_reply_sends (org_id, run_id, answer_seq, part, route) values ($1, $2, 1, 0, 'kommo_talk')`, [orgA.orgId, runA]);
  // The run needs a person (its reply failed).
  await admin.query(`insert into public.run_attention (org_id, run_id, reason) values ($1, $2, 'reply_failed')`, [orgA.orgId, runA]);
  // CRM: a connection of org A with one row in each CRM table.
  const crmConnectionA = randomUUID();
  await admin.query(`insert into public.crm_connections (id, org_id, provider, name, auth_kind, status) values ($1, $2, 'hubspot', 'Isolation', 'token', 'active')`, [crmConnectionA, orgA.orgId]);
  await admin.query(`insert into public.crm_credentials (org_id, connection_id, access_token) values ($1, $2, 'v1.k.iv.ct.tag')`, [orgA.orgId, crmConnectionA]);
  await admin.query(`insert into public.oauth_states (state_hash, org_id, connection_id, expires_at) values ($1, $2, $3, now() + interval '10 minutes')`, [
    randomBytes(32).toString('hex'),
    orgA.orgId,
    crmConnectionA,
  ]);
  await admin.query(`insert into public.crm_records (org_id, connection_id, object_type, external_id, name) values ($1, $2, 'deals', '1', 'Deal of A')`, [orgA.orgId, crmConnectionA]);
  await admin.query(`insert into public.crm_sync_runs (id, org_id, connection_id, mode, workflow_id) values ($1, $2, $3, 'full', 'crm-sync:x')`, [randomUUID(), orgA.orgId, crmConnectionA]);
  await admin.query(`insert into public.crm_sync_state (org_id, connection_id, object_type, cursor) values ($1, $2, 'deals', '2')`, [orgA.orgId, crmConnectionA]);
  await admin.query(
    `insert into public.crm_webhook_deliveries (org_id, connection_id, dedupe_key, kind, object_type, external_id, change) values ($1, $2, 'k', 'deal.creation', 'deals', '1', 'upsert')`,
    [orgA.orgId, crmConnectionA],
  );
  await admin.query(`insert into public.crm_rate_buckets (org_id, connection_id, capacity, refill_per_second, tokens) values ($1, $2, 10, 10, 10)`, [orgA.orgId, crmConnectionA]);
  await admin.query(`insert into public.crm_messaging_settings (org_id, connection_id, hubspot_sender_actor_id) values ($1, $2, 'A-1001')`, [orgA.orgId, crmConnectionA]);
  await admin.query(
    `insert into public.agent_trigger_firings (org_id, agent_id, connection_id, lead_external_id, stage_id, delivery_id) values ($1, $2, $3, '1', '142', 'isolation')`,
    [orgA.orgId, agentA, crmConnectionA],
  );
  // Org events: one event of org A delivered (one attempt) to one of its webhook endpoints.
  const eventA = randomUUID();
  await admin.query(`insert into public.org_events (id, org_id, seq, type, payload) values ($1, $2, 1, 'run.failed', '{}')`, [eventA, orgA.orgId]);
  const endpointA = randomUUID();
  await admin.query(`insert into public.webhook_endpoints (id, org_id, url, secret) values ($1, $2, 'https://hooks.example.com/a', 'v1.k.iv.ct.tag')`, [endpointA, orgA.orgId]);
  const deliveryA = randomUUID();
  await admin.query(`insert into public.webhook_deliveries (id, org_id, endpoint_id, event_id) values ($1, $2, $3, $4)`, [deliveryA, orgA.orgId, endpointA, eventA]);
  await admin.query(`insert into public.webhook_delivery_attempts (org_id, delivery_id, attempt, status_code, duration_ms) values ($1, $2, 1, 500, 3)`, [orgA.orgId, deliveryA]);
  // What an agent remembers of one of org A's leads.
  await admin.query(`insert into public.lead_memories (org_id, connection_id, lead_external_id, summary, source_run_id) values ($1, $2, 'lead-a', 'Lead of A wants a demo.', $3)`, [orgA.orgId, crmConnectionA, runA]);
  // Org A's own LLM provider and its key's ciphertext.
  await admin.query(`insert into public.org_llm_providers (org_id, base_url, default_model) values ($1, 'https://llm.example.com/v1', 'model-of-a')`, [orgA.orgId]);
  await admin.query(`insert into public.org_llm_provider_keys (org_id, api_key) values ($1, 'v1.k.iv.ct.tag')`, [orgA.orgId]);
});

afterAll(async () => {
  await app.end();
  await admin.end();
});

/** Org A's rows of `table` as the superuser sees them, for before/after comparisons. */
async function snapshot(table: string, tenant: TenantTable): Promise<unknown> {
  const { rows } = await admin.query(
    `select coalesce(jsonb_agg(to_jsonb(t) order by to_jsonb(t)::text), '[]'::jsonb) as rows
     from public.${pg.escapeIdentifier(table)} t where ${pg.escapeIdentifier(tenant.tenantColumn)} = $1`,
    [orgA.orgId],
  );
  return rows[0]?.rows;
}

const outsiders: [string, () => Principal][] = [
  ['a member of org B', () => user(orgB.userWithRole('member'))],
  ['the owner of org B', () => user(orgB.userWithRole('owner'))],
  ['a user in no org', () => user(randomUUID())],
  ['the worker of org B', () => worker(orgB.orgId)],
  ['an anonymous caller', () => anon],
];

it('declares isolation fixtures for every table in public', () => {
  expect(publicTables.filter((table) => !(table in tenantTables))).toEqual([]);
});

describe.each(publicTables)('table %s', (table) => {
  const tenant = (): TenantTable => {
    const declared = tenantTables[table];
    if (!declared) throw new Error(`no isolation fixture declared for public.${table}: add it to tenantTables`);
    return declared;
  };
  const where = () => `where ${pg.escapeIdentifier(tenant().tenantColumn)} = $1`;
  const qualified = `public.${pg.escapeIdentifier(table)}`;

  it('has org A rows to attack, and org A members can read them', async () => {
    const { rows } = await admin.query(`select count(*)::int as n from ${qualified} ${where()}`, [orgA.orgId]);
    expect(rows[0]?.n).toBeGreaterThan(0);
    const seen = await attempt(app, user(orgA.userWithRole(tenant().reader ?? 'member')), `select * from ${qualified} ${where()}`, [orgA.orgId]);
    expect(seen).toMatchObject({ rowCount: rows[0]?.n });
  });

  it.each(outsiders)('%s sees none of org A rows', async (_, principal) => {
    const outcome = await attempt(app, principal(), `select * from ${qualified} ${where()}`, [orgA.orgId]);
    if ('errorCode' in outcome) expect(outcome.errorCode).toBe('42501');
    else expect(outcome.rowCount).toBe(0);
  });

  it.each(outsiders)('%s can neither update nor delete org A rows', async (_, principal) => {
    const before = await snapshot(table, tenant());
    for (const sql of [`update ${qualified} set ${tenant().hijack} ${where()}`, `delete from ${qualified} ${where()}`]) {
      const outcome = await attempt(app, principal(), sql, [orgA.orgId]);
      // Denied outright where the role lacks the privilege; filtered to 0 rows by the policy otherwise.
      if ('errorCode' in outcome) expect(outcome.errorCode).toBe('42501');
      else expect(outcome.rowCount).toBe(0);
    }
    expect(await snapshot(table, tenant())).toEqual(before);
  });

  it('is closed to anonymous callers entirely', async () => {
    const outcome = await attempt(app, anon, `select * from ${qualified}`);
    expect(outcome).toMatchObject({ errorCode: '42501' });
  });
});

describe('workers', () => {
  it("a worker of org B cannot read org A's runs", async () => {
    const outcome = await attempt(app, worker(orgB.orgId), 'select id from public.agent_runs where id = $1', [runA]);
    expect(outcome).toMatchObject({ rowCount: 0 });
  });

  it("a worker of org B cannot append to org A's run events", async () => {
    const outcome = await attempt(
      app,
      worker(orgB.orgId),
      `insert into public.run_events (org_id, run_id, seq, type) values ($1, $2, 100, 'forged')`,
      [orgA.orgId, runA],
    );
    expect(outcome).toMatchObject({ errorCode: '42501' });
    const { rows } = await admin.query(`select count(*)::int as n from public.run_events where run_id = $1 and seq = 100`, [runA]);
    expect(rows[0]?.n).toBe(0);
  });

  it("a worker of org A moves org A's run forward and appends its events", async () => {
    const runId = await createRun(admin, orgA.orgId, agentA, { createdBy: orgA.userWithRole('member') });
    const updated = await attempt(
      app,
      worker(orgA.orgId),
      `update public.agent_runs set status = 'running', started_at = now() where id = $1`,
      [runId],
    );
    expect(updated).toMatchObject({ rowCount: 1 });
    const appended = await attempt(
      app,
      worker(orgA.orgId),
      `insert into public.run_events (org_id, run_id, seq, type, payload) values ($1, $2, 1, 'started', '{"ok":true}')`,
      [orgA.orgId, runId],
    );
    expect(appended).toMatchObject({ rowCount: 1 });

    const { rows } = await admin.query(
      `select r.status, r.started_at is not null as started, r.updated_at > r.created_at as touched,
              (select count(*)::int from public.run_events e where e.run_id = r.id) as events
       from public.agent_runs r where r.id = $1`,
      [runId],
    );
    expect(rows[0]).toEqual({ status: 'running', started: true, touched: true, events: 1 });
  });

  it('a worker cannot rewrite history, delete runs, move a run to another org or create runs', async () => {
    const principal = worker(orgA.orgId);
    await expect(attempt(app, principal, `update public.run_events set type = 'edited' where run_id = $1`, [runA])).resolves.toMatchObject({ errorCode: '42501' });
    await expect(attempt(app, principal, `delete from public.run_events where run_id = $1`, [runA])).resolves.toMatchObject({ errorCode: '42501' });
    await expect(attempt(app, principal, `delete from public.agent_runs where id = $1`, [runA])).resolves.toMatchObject({ errorCode: '42501' });
    await expect(attempt(app, principal, `update public.agent_runs set org_id = $2 where id = $1`, [runA, orgB.orgId])).resolves.toMatchObject({ errorCode: '42501' });
    await expect(
      attempt(app, principal, `insert into public.agent_runs (org_id, agent_id, input) values ($1, $2, 'x')`, [orgA.orgId, agentA]),
    ).resolves.toMatchObject({ errorCode: '42501' });
    await expect(
      attempt(app, principal, `insert into public.agents (org_id, name, model) values ($1, 'x', 'y')`, [orgA.orgId]),
    ).resolves.toMatchObject({ errorCode: '42501' });
  });
});

describe('users', () => {
  it('a member who is not an admin cannot create agents', async () => {
    const outcome = await attempt(
      app,
      user(orgA.userWithRole('member')),
      `insert into public.agents (org_id, name, model) values ($1, 'Sneaky', 'm')`,
      [orgA.orgId],
    );
    expect(outcome).toMatchObject({ errorCode: '42501' });
  });

  it('an admin creates and edits agents in their own org but not in another', async () => {
    const adminA = user(orgA.userWithRole('admin'));
    const created = await attempt(app, adminA, `insert into public.agents (org_id, name, model) values ($1, 'New', 'm') returning id`, [orgA.orgId]);
    expect(created).toMatchObject({ rowCount: 1 });
    const renamed = await attempt(app, adminA, `update public.agents set name = 'Renamed' where id = $1`, [agentA]);
    expect(renamed).toMatchObject({ rowCount: 1 });
    const elsewhere = await attempt(app, adminA, `insert into public.agents (org_id, name, model) values ($1, 'New', 'm')`, [orgB.orgId]);
    expect(elsewhere).toMatchObject({ errorCode: '42501' });
  });

  it('a user starts runs only in their own name', async () => {
    const memberA = orgA.userWithRole('member');
    const impersonating = await attempt(
      app,
      user(memberA),
      `insert into public.agent_runs (org_id, agent_id, input, created_by) values ($1, $2, 'hi', $3)`,
      [orgA.orgId, agentA, orgA.userWithRole('owner')],
    );
    expect(impersonating).toMatchObject({ errorCode: '42501' });
    const own = await attempt(
      app,
      user(memberA),
      `insert into public.agent_runs (org_id, agent_id, input, created_by) values ($1, $2, 'hi', $3) returning status, workflow_id, id`,
      [orgA.orgId, agentA, memberA],
    );
    expect(own).toMatchObject({ rowCount: 1 });
    const row = 'rows' in own ? own.rows[0] : undefined;
    expect(row?.status).toBe('queued');
    expect(row?.workflow_id).toBe(`agent-run:${String(row?.id)}`);
  });

  it('a user cannot change a run, even in their own org: only its worker does', async () => {
    const outcome = await attempt(app, user(orgA.userWithRole('owner')), `update public.agent_runs set status = 'completed' where id = $1`, [runA]);
    expect(outcome).toMatchObject({ rowCount: 0 });
    const { rows } = await admin.query('select status from public.agent_runs where id = $1', [runA]);
    expect(rows[0]?.status).toBe('queued');
  });

  it("a run always belongs to its agent's org, even for a member of both orgs", async () => {
    const first = await createOrgWithMembers(admin, ['member']);
    const both = first.userWithRole('member');
    const second = await createOrgWithMembers(admin, []);
    await admin.query(`insert into public.organization_members (org_id, user_id, role) values ($1, $2, 'member')`, [
      second.orgId,
      both,
    ]);
    const agentOfFirst = await createAgent(admin, first.orgId);
    const outcome = await attempt(
      app,
      user(both),
      `insert into public.agent_runs (org_id, agent_id, input, created_by) values ($1, $2, 'hi', $3)`,
      [second.orgId, agentOfFirst, both],
    );
    expect(outcome).toMatchObject({ errorCode: '23503' });
  });

  it('an idempotency key is unique within an org, not across orgs', async () => {
    const key = `key-${randomUUID()}`;
    await createRun(admin, orgA.orgId, agentA, { idempotencyKey: key });
    await createRun(admin, orgB.orgId, agentB, { idempotencyKey: key });
    await expect(createRun(admin, orgA.orgId, agentA, { idempotencyKey: key })).rejects.toMatchObject({ code: '23505' });
  });

  it('members read their own org, its members, agents, runs and events', async () => {
    const principal = user(orgB.userWithRole('member'));
    const outcome = await attempt(
      app,
      principal,
      `select (select count(*)::int from public.organizations) as orgs,
              (select count(*)::int from public.organization_members) as members,
              (select count(*)::int from public.agents where id = $1) as agents,
              (select count(*)::int from public.agent_runs where id = $2) as runs,
              (select count(*)::int from public.run_events where run_id = $2) as events`,
      [agentB, runB],
    );
    expect(outcome).toMatchObject({ rows: [{ orgs: 1, members: 2, agents: 1, runs: 1, events: 1 }] });
  });
});

describe('agent runtime tables', () => {
  it('a member answers approvals only in their own name, and cannot decide them directly', async () => {
    const member = orgA.userWithRole('member');
    const { rows } = await admin.query(`select id from public.run_approvals where run_id = $1`, [runA]);
    const approvalId = rows[0]?.id as string;
    const impersonating = await attempt(
      app,
      user(member),
      `insert into public.run_approval_responses (org_id, approval_id, author, decision) values ($1, $2, $3, 'approve')`,
      [orgA.orgId, approvalId, orgA.userWithRole('owner')],
    );
    expect(impersonating).toMatchObject({ errorCode: '42501' });
    const own = await attempt(
      app,
      user(member),
      `insert into public.run_approval_responses (org_id, approval_id, author, decision) values ($1, $2, $3, 'approve')`,
      [orgA.orgId, approvalId, member],
    );
    expect(own).toMatchObject({ rowCount: 1 });
    const deciding = await attempt(app, user(orgA.userWithRole('owner')), `update public.run_approvals set status = 'approved' where id = $1`, [approvalId]);
    expect(deciding).toMatchObject({ rowCount: 0 });
  });

  it("a worker of org B cannot record effects or usage for org A; org A's worker can", async () => {
    for (const [sql, params] of [
      [`insert into public.effect_ledger (org_id, idempotency_key, tool_name) values ($1, 'forged', 'x')`, [orgA.orgId]],
      [`insert into public.usage_daily (org_id, day, runs) values ($1, current_date - 1, 1)`, [orgA.orgId]],
    ] as const) {
      expect(await attempt(app, worker(orgB.orgId), sql, [...params])).toMatchObject({ errorCode: '42501' });
    }
    const own = await attempt(app, worker(orgA.orgId), `insert into public.effect_ledger (org_id, idempotency_key, tool_name) values ($1, $2, 'x')`, [
      orgA.orgId,
      `own-${randomUUID()}`,
    ]);
    expect(own).toMatchObject({ rowCount: 1 });
  });

  it('members cannot write knowledge documents, admins can, and workers only read them', async () => {
    const sql = `insert into public.knowledge_documents (org_id, title, body) values ($1, 't', 'b')`;
    expect(await attempt(app, user(orgA.userWithRole('member')), sql, [orgA.orgId])).toMatchObject({ errorCode: '42501' });
    expect(await attempt(app, worker(orgA.orgId), sql, [orgA.orgId])).toMatchObject({ errorCode: '42501' });
    expect(await attempt(app, user(orgA.userWithRole('admin')), sql, [orgA.orgId])).toMatchObject({ rowCount: 1 });
    const read = await attempt(app, worker(orgA.orgId), `select count(*)::int as n from public.knowledge_documents where org_id = $1`, [orgA.orgId]);
    expect(read).toMatchObject({ rows: [{ n: 2 }] });
  });
});
