import { randomBytes, randomUUID } from 'node:crypto';
import type pg from 'pg';

/**
 * What every principal may do to every table in `public`: the single declaration the RLS matrix
 * (rls-matrix.test.ts) checks against the live database. A table in the catalog without an entry
 * here fails the matrix, so adding a table means adding one entry:
 *
 *   my_table: {
 *     seed: async (db, w) => { ...insert one row of w.orgId as superuser...; return { where: 'id = $1', params: [id] } },
 *     insert: async (db, w) => ({ sql: 'insert into public.my_table (org_id, …) values ($1, …)', params: [w.orgId, …] }),
 *     update: `name = 'changed'`,
 *     allow: { select: MEMBERS, insert: ADMINS, update: ADMINS, delete: ADMINS },
 *   },
 *
 * `allow` lists who succeeds; everyone else must be refused: SELECT sees nothing (or 42501),
 * INSERT raises 42501, UPDATE/DELETE affect no row (or raise 42501) and leave it unchanged.
 * Write inserts so the same statement works for every actor: "in their own name" columns take
 * `coalesce((select auth.uid()), gen_random_uuid())`, unique columns take fresh values.
 */

export const ACTORS = [
  'owner',
  'admin',
  'member',
  'otherOrgOwner',
  'noMembership',
  'anon',
  'apiKeyMember',
  'apiKeyAdmin',
  'apiKeyOtherOrg',
  'workerOwnOrg',
  'workerOtherOrg',
  'serviceRole',
] as const;
export type Actor = (typeof ACTORS)[number];
export const OPERATIONS = ['select', 'insert', 'update', 'delete'] as const;
export type Operation = (typeof OPERATIONS)[number];

/** One organization with an owner, an admin and a member, and a parent row of each kind. */
export interface World {
  orgId: string;
  ownerId: string;
  adminId: string;
  memberId: string;
  /** A signed-in person outside the org, the addressee of the org's invites in the transition cases. */
  inviteeId: string;
  agentId: string;
  runId: string;
  approvalId: string;
  connectionId: string;
}

export type Db = Pick<pg.Pool, 'query'>;
export interface RowRef {
  /** A predicate selecting exactly the seeded row, with $1… placeholders. */
  where: string;
  params: unknown[];
}
export interface Statement {
  sql: string;
  params: unknown[];
}

export interface TableExpectation {
  /** Inserts one row belonging to `w.orgId` as the superuser. */
  seed(db: Db, w: World): Promise<RowRef>;
  /** A statement inserting a new row of `w.orgId`, run as the actor under test. */
  insert(db: Db, w: World): Promise<Statement>;
  /** The SET clause of the UPDATE attempted on a seeded row; must change it. */
  update: string;
  allow: Record<Operation, readonly Actor[]>;
}

// Who acts at each level for the org under test.
const MEMBERS: readonly Actor[] = ['owner', 'admin', 'member', 'apiKeyMember', 'apiKeyAdmin', 'workerOwnOrg', 'serviceRole'];
const ADMINS: readonly Actor[] = ['owner', 'admin', 'apiKeyAdmin', 'serviceRole'];
const ADMINS_AND_WORKER: readonly Actor[] = [...ADMINS, 'workerOwnOrg'];
const OWNERS: readonly Actor[] = ['owner', 'serviceRole'];
const WORKER: readonly Actor[] = ['workerOwnOrg', 'serviceRole'];
const SERVICE: readonly Actor[] = ['serviceRole'];
const NOBODY: readonly Actor[] = [];
/** People of the org acting in their own name (plus operators). */
const ORG_PEOPLE: readonly Actor[] = ['owner', 'admin', 'member', 'serviceRole'];

const SELF = `coalesce((select auth.uid()), gen_random_uuid())`;
const hash32 = () => randomBytes(32);
const hex64 = () => randomBytes(32).toString('hex');
const alnum8 = () => randomBytes(6).toString('base64').replace(/[^A-Za-z0-9]/g, 'x').slice(0, 8);
/**
 * Keys unique within one world (a run's event seq, an org's usage day): a counter, never a random
 * draw, so no two seeds of a suite run can collide (random days once collided in a fresh clone).
 * Worlds are fresh orgs and runs, so a per-process counter is unique wherever these keys are.
 */
let worldKeyCounter = 1_000; // above the seqs createWorld itself uses (approval seq 1)
const seq = () => ++worldKeyCounter;

async function newKnowledgeDocument(db: Db, orgId: string): Promise<string> {
  const row = await insertRow(db, `insert into public.knowledge_documents (org_id, title, body) values ($1, 'matrix', 'b') returning id`, [orgId]);
  return row.id as string;
}

async function insertRow(db: Db, sql: string, params: unknown[]): Promise<Record<string, unknown>> {
  const { rows } = await db.query(sql, params);
  return rows[0] as Record<string, unknown>;
}

async function newOrgEvent(db: Db, orgId: string): Promise<string> {
  const row = await insertRow(db, `insert into public.org_events (id, org_id, seq, type) values (gen_random_uuid(), $1, $2, 'run.failed') returning id`, [orgId, seq()]);
  return row.id as string;
}

async function newWebhookEndpoint(db: Db, orgId: string): Promise<string> {
  const row = await insertRow(db, `insert into public.webhook_endpoints (org_id, url, secret) values ($1, 'https://hooks.example.com/x', 'v1.k.iv.ct.tag') returning id`, [orgId]);
  return row.id as string;
}

async function newWebhookDelivery(db: Db, orgId: string): Promise<string> {
  const row = await insertRow(db, `insert into public.webhook_deliveries (org_id, endpoint_id, event_id) values ($1, $2, $3) returning id`, [
    orgId,
    await newWebhookEndpoint(db, orgId),
    await newOrgEvent(db, orgId),
  ]);
  return row.id as string;
}

/** The org's LLM provider settings (one per org; a second seed of the same world keeps the first). */
async function newLlmProvider(db: Db, orgId: string): Promise<void> {
  await db.query(`insert into public.org_llm_providers (org_id, base_url, default_model) values ($1, 'https://llm.example.com/v1', 'matrix-model') on conflict (org_id) do nothing`, [orgId]);
}

export async function newConnection(db: Db, orgId: string): Promise<string> {
  const row = await insertRow(
    db,
    `insert into public.crm_connections (org_id, provider, name, auth_kind) values ($1, 'hubspot', 'matrix', 'token') returning id`,
    [orgId],
  );
  return row.id as string;
}

/** Creates a world through the superuser connection (no principal, so no creator trigger fires). */
export async function createWorld(db: Db): Promise<World> {
  const orgId = randomUUID();
  const [ownerId, adminId, memberId] = [randomUUID(), randomUUID(), randomUUID()];
  await db.query(`insert into public.organizations (id, name) values ($1, 'matrix org')`, [orgId]);
  await db.query(
    `insert into public.organization_members (org_id, user_id, role) values ($1, $2, 'owner'), ($1, $3, 'admin'), ($1, $4, 'member')`,
    [orgId, ownerId, adminId, memberId],
  );
  const agent = await insertRow(db, `insert into public.agents (org_id, name, model) values ($1, 'matrix', 'test/model') returning id`, [orgId]);
  const run = await insertRow(db, `insert into public.agent_runs (org_id, agent_id, input) values ($1, $2, 'matrix') returning id`, [orgId, agent.id]);
  const approvalId = randomUUID();
  await db.query(
    `insert into public.run_approvals (id, org_id, run_id, seq, kind, tool_name, expires_at) values ($1, $2, $3, 1, 'approval', 'matrix', now() + interval '1 day')`,
    [approvalId, orgId, run.id],
  );
  const connectionId = await newConnection(db, orgId);
  return { orgId, ownerId, adminId, memberId, inviteeId: randomUUID(), agentId: agent.id as string, runId: run.id as string, approvalId, connectionId };
}

export const expectations: Record<string, TableExpectation> = {
  // Core tenancy ----------------------------------------------------------------------------------
  organizations: {
    seed: async (_db, w) => ({ where: 'id = $1', params: [w.orgId] }),
    insert: async () => ({ sql: `insert into public.organizations (id, name) values ($1, 'new org')`, params: [randomUUID()] }),
    update: `name = 'changed'`,
    // Any signed-in person founds an org; keys and workers do not.
    allow: { select: MEMBERS, insert: ['owner', 'admin', 'member', 'otherOrgOwner', 'noMembership', 'serviceRole'], update: ADMINS, delete: OWNERS },
  },
  organization_members: {
    seed: async (db, w) => {
      const userId = randomUUID();
      await db.query(`insert into public.organization_members (org_id, user_id, role) values ($1, $2, 'member')`, [w.orgId, userId]);
      return { where: 'org_id = $1 and user_id = $2', params: [w.orgId, userId] };
    },
    insert: async (_db, w) => ({
      sql: `insert into public.organization_members (org_id, user_id, role) values ($1, $2, 'member')`,
      params: [w.orgId, randomUUID()],
    }),
    update: `role = 'admin'`,
    allow: { select: MEMBERS, insert: ADMINS, update: ADMINS, delete: ADMINS },
  },
  invites: {
    seed: async (db, w) => {
      const row = await insertRow(
        db,
        `insert into public.invites (org_id, email, role, token_hash, expires_at) values ($1, $2, 'member', $3, now() + interval '1 day') returning id`,
        [w.orgId, `${randomUUID()}@example.test`, hash32()],
      );
      return { where: 'id = $1', params: [row.id] };
    },
    insert: async (_db, w) => ({
      sql: `insert into public.invites (org_id, email, role, token_hash, invited_by, expires_at)
            values ($1, $2, 'member', $3, (select auth.uid()), now() + interval '1 day')`,
      params: [w.orgId, `${randomUUID()}@example.test`, hash32()],
    }),
    update: `revoked_at = now()`,
    allow: { select: ADMINS, insert: ADMINS, update: ADMINS, delete: SERVICE },
  },
  api_keys: {
    seed: async (db, w) => {
      const row = await insertRow(
        db,
        `insert into public.api_keys (org_id, name, prefix, key_hash, created_by) values ($1, 'matrix', $2, $3, $4) returning id`,
        [w.orgId, `gap_live_${alnum8()}`, hash32(), w.adminId],
      );
      return { where: 'id = $1', params: [row.id] };
    },
    insert: async (_db, w) => ({
      sql: `insert into public.api_keys (org_id, name, prefix, key_hash, scope, created_by) values ($1, 'new', $2, $3, 'member', ${SELF})`,
      params: [w.orgId, `gap_live_${alnum8()}`, hash32()],
    }),
    update: `revoked_at = now()`,
    // Only a person who is an admin mints keys (a key cannot mint keys); revocation is an update.
    allow: { select: ADMINS, insert: ['owner', 'admin', 'serviceRole'], update: ADMINS, delete: SERVICE },
  },
  audit_log: {
    seed: async (db, w) => {
      const row = await insertRow(db, `insert into public.audit_log (org_id, action) values ($1, 'matrix.seeded') returning id`, [w.orgId]);
      return { where: 'id = $1', params: [row.id] };
    },
    insert: async (_db, w) => ({ sql: `insert into public.audit_log (org_id, action) values ($1, 'matrix.inserted')`, params: [w.orgId] }),
    update: `action = 'matrix.tampered'`,
    // Append-only, even for operator tooling. The API's entries are written by triggers on the rows
    // its actions change (private.audit_change); by hand, only a worker for its own org.
    allow: { select: ADMINS, insert: WORKER, update: NOBODY, delete: NOBODY },
  },

  // Agents and runs -------------------------------------------------------------------------------
  agents: {
    seed: async (db, w) => {
      const row = await insertRow(db, `insert into public.agents (org_id, name, model) values ($1, 'seeded', 'm') returning id`, [w.orgId]);
      return { where: 'id = $1', params: [row.id] };
    },
    insert: async (_db, w) => ({ sql: `insert into public.agents (org_id, name, model) values ($1, 'new', 'm')`, params: [w.orgId] }),
    update: `name = 'changed'`,
    allow: { select: MEMBERS, insert: ADMINS, update: ADMINS, delete: ADMINS },
  },
  agent_runs: {
    seed: async (db, w) => {
      const row = await insertRow(db, `insert into public.agent_runs (org_id, agent_id, input) values ($1, $2, 'seeded') returning id`, [w.orgId, w.agentId]);
      return { where: 'id = $1', params: [row.id] };
    },
    // A user's run carries their own id; an API key's carries none.
    insert: async (_db, w) => ({
      sql: `insert into public.agent_runs (org_id, agent_id, input, created_by) values ($1, $2, 'new', (select auth.uid()))`,
      params: [w.orgId, w.agentId],
    }),
    update: `status = 'cancelled'`,
    allow: { select: MEMBERS, insert: ['owner', 'admin', 'member', 'apiKeyMember', 'apiKeyAdmin', 'serviceRole'], update: WORKER, delete: SERVICE },
  },
  run_events: {
    seed: async (db, w) => {
      const row = await insertRow(db, `insert into public.run_events (org_id, run_id, seq, type) values ($1, $2, $3, 'seeded') returning id`, [w.orgId, w.runId, seq()]);
      return { where: 'id = $1', params: [row.id] };
    },
    insert: async (_db, w) => ({ sql: `insert into public.run_events (org_id, run_id, seq, type) values ($1, $2, $3, 'new')`, params: [w.orgId, w.runId, seq()] }),
    update: `type = 'changed'`,
    allow: { select: MEMBERS, insert: WORKER, update: SERVICE, delete: SERVICE },
  },
  run_approvals: {
    seed: async (db, w) => {
      const id = randomUUID();
      await db.query(
        `insert into public.run_approvals (id, org_id, run_id, seq, kind, tool_name, expires_at) values ($1, $2, $3, $4, 'approval', 't', now() + interval '1 day')`,
        [id, w.orgId, w.runId, seq()],
      );
      return { where: 'id = $1', params: [id] };
    },
    insert: async (_db, w) => ({
      sql: `insert into public.run_approvals (id, org_id, run_id, seq, kind, tool_name, expires_at) values ($1, $2, $3, $4, 'approval', 't', now() + interval '1 day')`,
      params: [randomUUID(), w.orgId, w.runId, seq()],
    }),
    update: `status = 'expired'`,
    allow: { select: MEMBERS, insert: WORKER, update: WORKER, delete: SERVICE },
  },
  run_approval_responses: {
    seed: async (db, w) => {
      const row = await insertRow(
        db,
        `insert into public.run_approval_responses (org_id, approval_id, author, decision) values ($1, $2, $3, 'approve') returning id`,
        [w.orgId, w.approvalId, w.memberId],
      );
      return { where: 'id = $1', params: [row.id] };
    },
    insert: async (_db, w) => ({
      sql: `insert into public.run_approval_responses (org_id, approval_id, author, decision) values ($1, $2, ${SELF}, 'approve')`,
      params: [w.orgId, w.approvalId],
    }),
    update: `decision = 'reject'`,
    // People answer in their own name; keys and workers never answer for a person.
    allow: { select: MEMBERS, insert: ORG_PEOPLE, update: SERVICE, delete: SERVICE },
  },
  conversation_messages: {
    seed: async (db, w) => {
      const row = await insertRow(
        db,
        `insert into public.conversation_messages (org_id, run_id, author, content) values ($1, $2, $3, 'seeded') returning id`,
        [w.orgId, w.runId, w.memberId],
      );
      return { where: 'id = $1', params: [row.id] };
    },
    insert: async (_db, w) => ({
      sql: `insert into public.conversation_messages (org_id, run_id, author, content) values ($1, $2, ${SELF}, 'new')`,
      params: [w.orgId, w.runId],
    }),
    update: `content = 'changed'`,
    // People write in their own name; messages are never edited or deleted through the app.
    allow: { select: MEMBERS, insert: ORG_PEOPLE, update: SERVICE, delete: SERVICE },
  },
  effect_ledger: {
    seed: async (db, w) => {
      const key = `seed:${randomUUID()}`;
      await db.query(`insert into public.effect_ledger (org_id, idempotency_key, run_id, tool_name) values ($1, $2, $3, 't')`, [w.orgId, key, w.runId]);
      return { where: 'org_id = $1 and idempotency_key = $2', params: [w.orgId, key] };
    },
    insert: async (_db, w) => ({
      sql: `insert into public.effect_ledger (org_id, idempotency_key, run_id, tool_name) values ($1, $2, $3, 't')`,
      params: [w.orgId, `new:${randomUUID()}`, w.runId],
    }),
    update: `tool_name = 'changed'`,
    allow: { select: MEMBERS, insert: WORKER, update: SERVICE, delete: SERVICE },
  },
  usage_daily: {
    seed: async (db, w) => {
      const day = seq();
      await db.query(`insert into public.usage_daily (org_id, day, runs) values ($1, date '2000-01-01' + $2::int, 1)`, [w.orgId, day]);
      return { where: `org_id = $1 and day = date '2000-01-01' + $2::int`, params: [w.orgId, day] };
    },
    insert: async (_db, w) => ({
      sql: `insert into public.usage_daily (org_id, day, runs) values ($1, date '2000-01-01' + $2::int, 1)`,
      params: [w.orgId, seq()],
    }),
    update: `runs = runs + 1`,
    // Metering is the worker's: members read it, nobody but operators corrects it.
    allow: { select: MEMBERS, insert: WORKER, update: WORKER, delete: SERVICE },
  },
  knowledge_documents: {
    seed: async (db, w) => {
      const row = await insertRow(db, `insert into public.knowledge_documents (org_id, title, body) values ($1, 'seeded', 'b') returning id`, [w.orgId]);
      return { where: 'id = $1', params: [row.id] };
    },
    insert: async (_db, w) => ({ sql: `insert into public.knowledge_documents (org_id, title, body) values ($1, 'new', 'b')`, params: [w.orgId] }),
    update: `title = 'changed'`,
    // The org's worker records ingestion status and the extracted text.
    allow: { select: MEMBERS, insert: ADMINS, update: ADMINS_AND_WORKER, delete: ADMINS },
  },
  knowledge_document_files: {
    seed: async (db, w) => {
      const id = await newKnowledgeDocument(db, w.orgId);
      await db.query(`insert into public.knowledge_document_files (document_id, org_id, revision, content, sha256) values ($1, $2, 1, '\\x00', repeat('a', 64))`, [id, w.orgId]);
      return { where: 'document_id = $1', params: [id] };
    },
    insert: async (db, w) => ({
      sql: `insert into public.knowledge_document_files (document_id, org_id, revision, content, sha256) values ($1, $2, 1, '\\x01', repeat('b', 64))`,
      params: [await newKnowledgeDocument(db, w.orgId), w.orgId],
    }),
    update: `revision = 2`,
    allow: { select: MEMBERS, insert: ADMINS, update: ADMINS, delete: ADMINS },
  },
  knowledge_chunks: {
    seed: async (db, w) => {
      const id = await newKnowledgeDocument(db, w.orgId);
      await db.query(`insert into public.knowledge_chunks (org_id, document_id, position, passage, language, search) values ($1, $2, 0, 'seeded', 'en', to_tsvector('english', 'seeded'))`, [w.orgId, id]);
      return { where: 'document_id = $1', params: [id] };
    },
    insert: async (db, w) => ({
      sql: `insert into public.knowledge_chunks (org_id, document_id, position, passage, language, search) values ($1, $2, 0, 'new', 'en', to_tsvector('english', 'new'))`,
      params: [w.orgId, await newKnowledgeDocument(db, w.orgId)],
    }),
    update: `passage = 'changed'`,
    // Written by ingestion (the org's worker) only, and replaced rather than changed.
    allow: { select: MEMBERS, insert: WORKER, update: SERVICE, delete: WORKER },
  },
  knowledge_terms: {
    seed: async (db, w) => {
      const id = await newKnowledgeDocument(db, w.orgId);
      await db.query(`insert into public.knowledge_terms (org_id, document_id, term, compact) values ($1, $2, 'seeded', 'seeded')`, [w.orgId, id]);
      return { where: 'document_id = $1', params: [id] };
    },
    insert: async (db, w) => ({
      sql: `insert into public.knowledge_terms (org_id, document_id, term, compact) values ($1, $2, 'new', 'new')`,
      params: [w.orgId, await newKnowledgeDocument(db, w.orgId)],
    }),
    update: `compact = 'changed'`,
    allow: { select: MEMBERS, insert: WORKER, update: SERVICE, delete: WORKER },
  },
  knowledge_lexemes: {
    seed: async (db, w) => {
      const id = await newKnowledgeDocument(db, w.orgId);
      await db.query(`insert into public.knowledge_lexemes (org_id, document_id, language, lexeme, chunks) values ($1, $2, 'en', 'seeded', 1)`, [w.orgId, id]);
      return { where: 'document_id = $1', params: [id] };
    },
    insert: async (db, w) => ({
      sql: `insert into public.knowledge_lexemes (org_id, document_id, language, lexeme, chunks) values ($1, $2, 'en', 'new', 1)`,
      params: [w.orgId, await newKnowledgeDocument(db, w.orgId)],
    }),
    update: `chunks = 2`,
    allow: { select: MEMBERS, insert: WORKER, update: SERVICE, delete: WORKER },
  },
  knowledge_vocabulary: {
    seed: async (db, w) => {
      const term = `seeded-${randomUUID()}`;
      await db.query(`insert into public.knowledge_vocabulary (org_id, term, compact) values ($1, $2, 'seeded')`, [w.orgId, term]);
      return { where: 'org_id = $1 and term = $2', params: [w.orgId, term] };
    },
    insert: async (_db, w) => ({
      sql: `insert into public.knowledge_vocabulary (org_id, term, compact) values ($1, $2, 'new')`,
      params: [w.orgId, `new-${randomUUID()}`],
    }),
    update: `compact = 'changed'`,
    allow: { select: MEMBERS, insert: WORKER, update: SERVICE, delete: WORKER },
  },

  knowledge_vector_cells: {
    seed: async (db, w) => {
      const model = `seeded-${randomUUID()}`;
      await db.query(`insert into public.knowledge_vector_cells (org_id, embedding_model, cell, pivot) values ($1, $2, 0, B'1010')`, [w.orgId, model]);
      return { where: 'org_id = $1 and embedding_model = $2', params: [w.orgId, model] };
    },
    insert: async (_db, w) => ({
      sql: `insert into public.knowledge_vector_cells (org_id, embedding_model, cell, pivot) values ($1, $2, 0, B'0101')`,
      params: [w.orgId, `new-${randomUUID()}`],
    }),
    update: `pivot = B'1111'`,
    // Drawn by private.knowledge_draw_vector_cells (the org's worker, security definer) only.
    allow: { select: MEMBERS, insert: SERVICE, update: SERVICE, delete: SERVICE },
  },

  // CRM -----------------------------------------------------------------------------------------------
  crm_connections: {
    seed: async (db, w) => ({ where: 'id = $1', params: [await newConnection(db, w.orgId)] }),
    insert: async (_db, w) => ({
      sql: `insert into public.crm_connections (org_id, provider, name, auth_kind) values ($1, 'kommo', 'new', 'oauth')`,
      params: [w.orgId],
    }),
    update: `name = 'changed'`,
    // Workers record status and errors on their org's connections.
    allow: { select: MEMBERS, insert: ADMINS, update: ADMINS_AND_WORKER, delete: ADMINS },
  },
  crm_credentials: {
    seed: async (db, w) => {
      const connectionId = await newConnection(db, w.orgId);
      await db.query(`insert into public.crm_credentials (org_id, connection_id, access_token) values ($1, $2, 'v1.seeded')`, [w.orgId, connectionId]);
      return { where: 'connection_id = $1', params: [connectionId] };
    },
    insert: async (db, w) => ({
      sql: `insert into public.crm_credentials (org_id, connection_id, access_token) values ($1, $2, 'v1.new')`,
      params: [w.orgId, await newConnection(db, w.orgId)],
    }),
    update: `access_token = 'v1.changed'`,
    // Ciphertexts only; never readable by members or member-scoped keys.
    allow: { select: ADMINS_AND_WORKER, insert: ADMINS_AND_WORKER, update: ADMINS_AND_WORKER, delete: ADMINS_AND_WORKER },
  },
  oauth_states: {
    seed: async (db, w) => {
      const hash = hex64();
      await db.query(`insert into public.oauth_states (state_hash, org_id, connection_id, expires_at) values ($1, $2, $3, now() + interval '10 minutes')`, [
        hash,
        w.orgId,
        w.connectionId,
      ]);
      return { where: 'state_hash = $1', params: [hash] };
    },
    insert: async (_db, w) => ({
      sql: `insert into public.oauth_states (state_hash, org_id, connection_id, expires_at) values ($1, $2, $3, now() + interval '10 minutes')`,
      params: [hex64(), w.orgId, w.connectionId],
    }),
    update: `expires_at = now() + interval '1 year'`,
    // Single-use states are inserted and consumed, never edited.
    allow: { select: ADMINS, insert: ADMINS, update: SERVICE, delete: ADMINS },
  },
  crm_records: {
    seed: async (db, w) => {
      const externalId = randomUUID();
      await db.query(`insert into public.crm_records (org_id, connection_id, object_type, external_id, name) values ($1, $2, 'contacts', $3, 'seeded')`, [
        w.orgId,
        w.connectionId,
        externalId,
      ]);
      return { where: `connection_id = $1 and object_type = 'contacts' and external_id = $2`, params: [w.connectionId, externalId] };
    },
    insert: async (_db, w) => ({
      sql: `insert into public.crm_records (org_id, connection_id, object_type, external_id, name) values ($1, $2, 'deals', $3, 'new')`,
      params: [w.orgId, w.connectionId, randomUUID()],
    }),
    update: `name = 'changed'`,
    allow: { select: MEMBERS, insert: WORKER, update: WORKER, delete: SERVICE },
  },
  crm_sync_runs: {
    seed: async (db, w) => {
      const id = randomUUID();
      await db.query(`insert into public.crm_sync_runs (id, org_id, connection_id, mode, workflow_id) values ($1, $2, $3, 'full', 'crm-sync:seed')`, [
        id,
        w.orgId,
        w.connectionId,
      ]);
      return { where: 'id = $1', params: [id] };
    },
    insert: async (_db, w) => ({
      sql: `insert into public.crm_sync_runs (id, org_id, connection_id, mode, workflow_id) values ($1, $2, $3, 'incremental', 'crm-sync:new')`,
      params: [randomUUID(), w.orgId, w.connectionId],
    }),
    update: `status = 'failed'`,
    allow: { select: MEMBERS, insert: WORKER, update: WORKER, delete: SERVICE },
  },
  crm_sync_state: {
    seed: async (db, w) => {
      const objectType = `seed-${randomUUID()}`;
      await db.query(`insert into public.crm_sync_state (org_id, connection_id, object_type) values ($1, $2, $3)`, [w.orgId, w.connectionId, objectType]);
      return { where: 'connection_id = $1 and object_type = $2', params: [w.connectionId, objectType] };
    },
    insert: async (_db, w) => ({
      sql: `insert into public.crm_sync_state (org_id, connection_id, object_type) values ($1, $2, $3)`,
      params: [w.orgId, w.connectionId, `new-${randomUUID()}`],
    }),
    update: `cursor = 'changed'`,
    allow: { select: MEMBERS, insert: WORKER, update: WORKER, delete: SERVICE },
  },
  crm_webhook_deliveries: {
    seed: async (db, w) => {
      const key = `seed-${randomUUID()}`;
      await db.query(
        `insert into public.crm_webhook_deliveries (org_id, connection_id, dedupe_key, kind, object_type, external_id, change) values ($1, $2, $3, 'k', 'contacts', 'x', 'upsert')`,
        [w.orgId, w.connectionId, key],
      );
      return { where: 'connection_id = $1 and dedupe_key = $2', params: [w.connectionId, key] };
    },
    insert: async (_db, w) => ({
      sql: `insert into public.crm_webhook_deliveries (org_id, connection_id, dedupe_key, kind, object_type, external_id, change) values ($1, $2, $3, 'k', 'contacts', 'x', 'delete')`,
      params: [w.orgId, w.connectionId, `new-${randomUUID()}`],
    }),
    update: `processed_at = now()`,
    allow: { select: ADMINS_AND_WORKER, insert: WORKER, update: WORKER, delete: SERVICE },
  },
  crm_rate_buckets: {
    seed: async (db, w) => {
      const connectionId = await newConnection(db, w.orgId);
      await db.query(`insert into public.crm_rate_buckets (org_id, connection_id, capacity, refill_per_second, tokens) values ($1, $2, 10, 1, 10)`, [w.orgId, connectionId]);
      return { where: 'connection_id = $1', params: [connectionId] };
    },
    insert: async (db, w) => ({
      sql: `insert into public.crm_rate_buckets (org_id, connection_id, capacity, refill_per_second, tokens) values ($1, $2, 10, 1, 10)`,
      params: [w.orgId, await newConnection(db, w.orgId)],
    }),
    update: `tokens = tokens - 1`,
    allow: { select: ADMINS_AND_WORKER, insert: WORKER, update: WORKER, delete: SERVICE },
  },
  agent_trigger_firings: {
    seed: async (db, w) => {
      const lead = `seed-${randomUUID()}`;
      await db.query(
        `insert into public.agent_trigger_firings (org_id, agent_id, connection_id, lead_external_id, stage_id, delivery_id) values ($1, $2, $3, $4, '142', 'seed')`,
        [w.orgId, w.agentId, w.connectionId, lead],
      );
      return { where: 'agent_id = $1 and lead_external_id = $2', params: [w.agentId, lead] };
    },
    insert: async (_db, w) => ({
      sql: `insert into public.agent_trigger_firings (org_id, agent_id, connection_id, lead_external_id, stage_id, delivery_id) values ($1, $2, $3, $4, '142', 'new')`,
      params: [w.orgId, w.agentId, w.connectionId, `new-${randomUUID()}`],
    }),
    update: `fired_at = now() - interval '1 day'`,
    allow: { select: ADMINS_AND_WORKER, insert: WORKER, update: WORKER, delete: SERVICE },
  },
  crm_reply_sends: {
    seed: async (db, w) => {
      const answerSeq = seq();
      await db.query(`insert into public.crm_reply_sends (org_id, run_id, answer_seq, part, route) values ($1, $2, $3, 0, 'kommo_talk')`, [w.orgId, w.runId, answerSeq]);
      return { where: 'run_id = $1 and answer_seq = $2', params: [w.runId, answerSeq] };
    },
    insert: async (_db, w) => ({
      sql: `insert into public.crm_reply_sends (org_id, run_id, answer_seq, part, route) values ($1, $2, $3, 0, 'kommo_talk')`,
      params: [w.orgId, w.runId, seq()],
    }),
    update: `status = 'sent'`,
    allow: { select: MEMBERS, insert: WORKER, update: WORKER, delete: SERVICE },
  },
  org_events: {
    seed: async (db, w) => ({ where: 'id = $1', params: [await newOrgEvent(db, w.orgId)] }),
    insert: async (_db, w) => ({
      sql: `insert into public.org_events (id, org_id, seq, type) values (gen_random_uuid(), $1, $2, 'approval.requested')`,
      params: [w.orgId, seq()],
    }),
    update: `type = 'reply.failed'`,
    allow: { select: MEMBERS, insert: WORKER, update: SERVICE, delete: SERVICE },
  },
  webhook_endpoints: {
    seed: async (db, w) => ({ where: 'id = $1', params: [await newWebhookEndpoint(db, w.orgId)] }),
    insert: async (_db, w) => ({
      sql: `insert into public.webhook_endpoints (org_id, url, secret) values ($1, 'https://hooks.example.com/new', 'v1.k.iv.ct.tag')`,
      params: [w.orgId],
    }),
    update: `url = 'https://attacker.example.com/'`,
    allow: { select: ADMINS_AND_WORKER, insert: ADMINS, update: SERVICE, delete: ADMINS },
  },
  webhook_deliveries: {
    seed: async (db, w) => ({ where: 'id = $1', params: [await newWebhookDelivery(db, w.orgId)] }),
    insert: async (db, w) => ({
      sql: `insert into public.webhook_deliveries (org_id, endpoint_id, event_id) values ($1, $2, $3)`,
      params: [w.orgId, await newWebhookEndpoint(db, w.orgId), await newOrgEvent(db, w.orgId)],
    }),
    update: `attempts = attempts + 1`,
    allow: { select: ADMINS_AND_WORKER, insert: WORKER, update: WORKER, delete: SERVICE },
  },
  webhook_delivery_attempts: {
    seed: async (db, w) => {
      const deliveryId = await newWebhookDelivery(db, w.orgId);
      await db.query(`insert into public.webhook_delivery_attempts (org_id, delivery_id, attempt, duration_ms) values ($1, $2, 1, 5)`, [w.orgId, deliveryId]);
      return { where: 'delivery_id = $1', params: [deliveryId] };
    },
    insert: async (db, w) => ({
      sql: `insert into public.webhook_delivery_attempts (org_id, delivery_id, attempt, duration_ms) values ($1, $2, 1, 5)`,
      params: [w.orgId, await newWebhookDelivery(db, w.orgId)],
    }),
    update: `duration_ms = duration_ms + 1`,
    allow: { select: ADMINS_AND_WORKER, insert: WORKER, update: WORKER, delete: SERVICE },
  },
  // The org's own LLM provider: settings members read, and the key's ciphertext they never do.
  org_llm_providers: {
    seed: async (db, w) => {
      await newLlmProvider(db, w.orgId);
      return { where: 'org_id = $1', params: [w.orgId] };
    },
    // One provider per org: each attempt starts from an org that has none.
    insert: async (db, w) => {
      await db.query(`delete from public.org_llm_providers where org_id = $1`, [w.orgId]);
      return { sql: `insert into public.org_llm_providers (org_id, base_url, default_model) values ($1, 'https://llm.example.com/v1', 'new-model')`, params: [w.orgId] };
    },
    update: `base_url = 'https://attacker.example.com/v1'`,
    allow: { select: MEMBERS, insert: ADMINS, update: ADMINS, delete: ADMINS },
  },
  org_llm_provider_keys: {
    seed: async (db, w) => {
      await newLlmProvider(db, w.orgId);
      await db.query(`insert into public.org_llm_provider_keys (org_id, api_key) values ($1, 'v1.seeded') on conflict (org_id) do nothing`, [w.orgId]);
      return { where: 'org_id = $1', params: [w.orgId] };
    },
    insert: async (db, w) => {
      await newLlmProvider(db, w.orgId);
      await db.query(`delete from public.org_llm_provider_keys where org_id = $1`, [w.orgId]);
      return { sql: `insert into public.org_llm_provider_keys (org_id, api_key) values ($1, 'v1.new')`, params: [w.orgId] };
    },
    update: `api_key = 'v1.changed'`,
    allow: { select: ADMINS_AND_WORKER, insert: ADMINS, update: ADMINS, delete: ADMINS },
  },
  crm_messaging_settings: {
    seed: async (db, w) => {
      const connectionId = await newConnection(db, w.orgId);
      await db.query(`insert into public.crm_messaging_settings (org_id, connection_id, hubspot_sender_actor_id) values ($1, $2, 'A-1001')`, [w.orgId, connectionId]);
      return { where: 'connection_id = $1', params: [connectionId] };
    },
    insert: async (db, w) => ({
      sql: `insert into public.crm_messaging_settings (org_id, connection_id, kommo_monthly_quota) values ($1, $2, 500)`,
      params: [w.orgId, await newConnection(db, w.orgId)],
    }),
    update: `quota_warn_percent = 90`,
    allow: { select: ADMINS_AND_WORKER, insert: ADMINS, update: ADMINS_AND_WORKER, delete: SERVICE },
  },
  run_attention: {
    seed: async (db, w) => {
      const run = await insertRow(db, `insert into public.agent_runs (org_id, agent_id, input) values ($1, $2, 'attention') returning id`, [w.orgId, w.agentId]);
      await db.query(`insert into public.run_attention (org_id, run_id, reason) values ($1, $2, 'reply_failed')`, [w.orgId, run.id]);
      return { where: 'run_id = $1', params: [run.id] };
    },
    insert: async (db, w) => ({
      sql: `insert into public.run_attention (org_id, run_id, reason) values ($1, $2, 'reply_failed')`,
      params: [w.orgId, (await insertRow(db, `insert into public.agent_runs (org_id, agent_id, input) values ($1, $2, 'attention') returning id`, [w.orgId, w.agentId])).id],
    }),
    update: `detail = 'updated'`,
    allow: { select: MEMBERS, insert: WORKER, update: WORKER, delete: MEMBERS },
  },
  lead_memories: {
    seed: async (db, w) => {
      const runId = (await insertRow(db, `insert into public.agent_runs (org_id, agent_id, input, status) values ($1, $2, '', 'completed') returning id`, [w.orgId, w.agentId])).id as string;
      await db.query(`insert into public.lead_memories (org_id, connection_id, lead_external_id, summary, source_run_id) values ($1, $2, 'lead-1', 'Wants a demo.', $3)`, [w.orgId, w.connectionId, runId]);
      return { where: 'source_run_id = $1', params: [runId] };
    },
    insert: async (db, w) => ({
      sql: `insert into public.lead_memories (org_id, connection_id, lead_external_id, summary, source_run_id) values ($1, $2, 'lead-2', 'New.', $3)`,
      params: [w.orgId, w.connectionId, (await insertRow(db, `insert into public.agent_runs (org_id, agent_id, input, status) values ($1, $2, '', 'completed') returning id`, [w.orgId, w.agentId])).id],
    }),
    update: `summary = 'rewritten'`,
    allow: { select: MEMBERS, insert: WORKER, update: SERVICE, delete: ADMINS },
  },
};

/** Who attempts a transition: an actor of the matrix, or the invitee of the world's invites. */
export type TransitionActor = Actor | 'invitee';

/**
 * State that only moves one way, whoever asks (rls-matrix.test.ts "one-way transitions"). Each
 * case seeds a row in a state (as the superuser), has each actor attempt `attempt`, and expects
 * every attempt to be refused (42501 or no row) with the row unchanged; `allowed` actors succeed.
 */
export interface TransitionCase {
  name: string;
  table: string;
  seed(db: Db, w: World): Promise<RowRef>;
  attempt(w: World, row: RowRef): Statement;
  refused: readonly TransitionActor[];
  allowed?: readonly TransitionActor[];
}

const inviteEmail = (w: World) => `${w.inviteeId}@example.test`;

function seedInvite(state: 'pending' | 'revoked' | 'accepted' | 'expired') {
  return async (db: Db, w: World): Promise<RowRef> => {
    const row = await insertRow(
      db,
      `insert into public.invites (org_id, email, role, token_hash, expires_at, revoked_at, accepted_at, accepted_by)
       values ($1, $2, 'member', $3, now() + case when $4 = 'expired' then interval '-1 minute' else interval '1 day' end,
               case when $4 = 'revoked' then now() end, case when $4 = 'accepted' then now() end, case when $4 = 'accepted' then $5::uuid end)
       returning id`,
      [w.orgId, inviteEmail(w), hash32(), state, w.inviteeId],
    );
    return { where: 'id = $1', params: [row.id] };
  };
}

async function seedRevokedKey(db: Db, w: World): Promise<RowRef> {
  const row = await insertRow(
    db,
    `insert into public.api_keys (org_id, name, prefix, key_hash, created_by, revoked_at, revoked_by) values ($1, 'revoked', $2, $3, $4::uuid, now(), 'user:' || $4::text) returning id`,
    [w.orgId, `gap_live_${alnum8()}`, hash32(), w.adminId],
  );
  return { where: 'id = $1', params: [row.id] };
}

const update = (table: string, set: string) => (_w: World, row: RowRef): Statement => ({ sql: `update public.${table} set ${set} where ${row.where}`, params: row.params });
const ACCEPT = `accepted_at = now(), accepted_by = (select auth.uid())`;

export const transitions: readonly TransitionCase[] = [
  {
    // The conversations list's order: only recording activity moves it (triggers), never a write to the column.
    name: "a conversation's last activity is not set by hand",
    table: 'agent_runs',
    seed: async (db, w) => {
      const row = await insertRow(db, `insert into public.agent_runs (org_id, agent_id, input, thread_key) values ($1, $2, 'thread', $3) returning id`, [w.orgId, w.agentId, `matrix-${randomUUID()}`]);
      return { where: 'id = $1', params: [row.id] };
    },
    attempt: update('agent_runs', `last_activity_at = now() + interval '1 year'`),
    refused: ['owner', 'admin', 'member', 'apiKeyAdmin', 'workerOwnOrg', 'workerOtherOrg', 'otherOrgOwner'],
    allowed: ['serviceRole'],
  },
  {
    name: 'a revoked invite is not re-opened',
    table: 'invites',
    seed: seedInvite('revoked'),
    attempt: update('invites', 'revoked_at = null'),
    refused: ['owner', 'admin', 'apiKeyAdmin', 'invitee', 'serviceRole'],
  },
  {
    name: 'a revoked invite is not accepted',
    table: 'invites',
    seed: seedInvite('revoked'),
    attempt: update('invites', ACCEPT),
    refused: ['invitee', 'owner'],
  },
  {
    name: 'a used invite is not re-opened',
    table: 'invites',
    seed: seedInvite('accepted'),
    attempt: update('invites', 'accepted_at = null, accepted_by = null'),
    refused: ['invitee', 'owner', 'admin', 'apiKeyAdmin', 'serviceRole'],
  },
  {
    name: 'a used invite is neither revoked nor re-dated',
    table: 'invites',
    seed: seedInvite('accepted'),
    attempt: update('invites', `revoked_at = now(), accepted_at = accepted_at + interval '1 day'`),
    refused: ['invitee', 'owner', 'admin', 'serviceRole'],
  },
  {
    name: 'an expired invite is not accepted',
    table: 'invites',
    seed: seedInvite('expired'),
    attempt: update('invites', ACCEPT),
    refused: ['invitee'],
  },
  {
    name: 'a pending invite is accepted only by its invitee, in their own name',
    table: 'invites',
    seed: seedInvite('pending'),
    attempt: update('invites', ACCEPT),
    refused: ['owner', 'admin', 'apiKeyAdmin', 'member', 'serviceRole'],
    allowed: ['invitee'],
  },
  {
    name: 'a used invite does not let its invitee join again',
    table: 'invites',
    seed: seedInvite('accepted'),
    attempt: (w) => ({ sql: `insert into public.organization_members (org_id, user_id, role) values ($1, $2, 'member')`, params: [w.orgId, w.inviteeId] }),
    refused: ['invitee'],
  },
  {
    name: 'a revoked API key is not un-revoked',
    table: 'api_keys',
    seed: seedRevokedKey,
    attempt: update('api_keys', 'revoked_at = null, revoked_by = null'),
    refused: ['owner', 'admin', 'apiKeyAdmin', 'serviceRole'],
  },
  {
    name: "a revoked API key's revocation is not re-dated",
    table: 'api_keys',
    seed: seedRevokedKey,
    attempt: update('api_keys', `revoked_at = now() + interval '1 year'`),
    refused: ['owner', 'admin', 'apiKeyAdmin', 'serviceRole'],
  },
];
