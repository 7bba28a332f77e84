import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { createPool, withPrincipal, withServiceRole } from '../../lib/db.js';
import type { Principal } from '../../lib/principal.js';
import { createDatabase, dropDatabase } from '../../scripts/stack/postgres.js';

/**
 * Database access for tests. The harness creates and migrates a fresh database and exports:
 * TEST_DATABASE_ADMIN_URL (a superuser of it) and TEST_DATABASE_URL (the same database as
 * `authenticator`, exactly how the application connects).
 * Fixtures use random ids, so test files can share one database and run in parallel.
 */

function requiredEnv(name: 'TEST_DATABASE_ADMIN_URL' | 'TEST_DATABASE_URL'): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run database tests through the test harness (npm test), which creates and migrates a test database`);
  }
  return value;
}

export function adminDatabaseUrl(): string {
  return requiredEnv('TEST_DATABASE_ADMIN_URL');
}

export function appDatabaseUrl(): string {
  return requiredEnv('TEST_DATABASE_URL');
}

/**
 * How the suite's pools talk to Postgres: TEST_DATABASE_PIPELINE and
 * TEST_DATABASE_PREPARED_STATEMENTS (`on` by default, as DATABASE_PIPELINE and
 * DATABASE_PREPARED_STATEMENTS are in production) set `off` run a suite on plain node-postgres
 * (`npm run test:db-modes` runs the focused suite both ways).
 */
export function testPoolMode(): { pipeline: boolean; preparedStatements: boolean } {
  return { pipeline: process.env.TEST_DATABASE_PIPELINE !== 'off', preparedStatements: process.env.TEST_DATABASE_PREPARED_STATEMENTS !== 'off' };
}

/**
 * Superuser pool: for checking results from outside RLS and for catalog queries. The caller ends
 * it. `url`: the owner URL of a test's own database instead of the suite's.
 */
export function adminPool(opts: { max?: number; url?: string } = {}): pg.Pool {
  return createPool(opts.url ?? adminDatabaseUrl(), { max: opts.max ?? 4, applicationName: 'tests-admin', ...testPoolMode() });
}

export interface OwnDatabase {
  /** Owner URL: for setup's DATABASE_MIGRATION_URL and `adminPool({ url })`. */
  adminUrl: string;
  /** As `authenticator`, for the processes' DATABASE_URL. */
  appUrl: string;
  drop(): Promise<void>;
}

/**
 * An empty database of a test's own on the suite's server, for tests that run the deployed API
 * (api/main.ts) as a process: its dispatch sweep (RUN_DISPATCH_INTERVAL_MS) claims every
 * undispatched run in its database, and on the shared one it started other files' runs in the
 * test's namespace, on the test's worker. Setup (or migrate()) fills it. The processes log in as
 * the suite's `authenticator`, a server-wide role whose password stays as it is.
 */
export async function createOwnDatabase(prefix: string): Promise<OwnDatabase> {
  const name = `${prefix}_${randomUUID().replaceAll('-', '')}`;
  const adminUrl = await createDatabase(adminDatabaseUrl(), name);
  const appUrl = new URL(appDatabaseUrl());
  appUrl.pathname = new URL(adminUrl).pathname;
  return { adminUrl, appUrl: appUrl.toString(), drop: () => dropDatabase(adminDatabaseUrl(), name) };
}

/** Pool connected as `authenticator`, as the API and workers are. The caller ends it. */
export function appPool(opts: { max?: number } = {}): pg.Pool {
  return createPool(appDatabaseUrl(), { max: opts.max ?? 4, applicationName: 'tests-app', ...testPoolMode() });
}

export type MemberRole = 'owner' | 'admin' | 'member';

export type OrgFixture = {
  orgId: string;
  members: { userId: string; role: MemberRole }[];
  /** The first member created with `role`; throws when there is none. */
  userWithRole(role: MemberRole): string;
};

/** An organization with one new user per entry of `roles`. Writes through the service role. */
export async function createOrgWithMembers(
  pool: pg.Pool,
  roles: readonly MemberRole[] = ['owner'],
  name = `Test org ${randomUUID().slice(0, 8)}`,
): Promise<OrgFixture> {
  const orgId = randomUUID();
  const members = roles.map((role) => ({ userId: randomUUID(), role }));
  await withServiceRole(pool, async (tx) => {
    await tx.query('insert into public.organizations (id, name) values ($1, $2)', [orgId, name]);
    for (const member of members) {
      await tx.query('insert into public.organization_members (org_id, user_id, role) values ($1, $2, $3)', [
        orgId,
        member.userId,
        member.role,
      ]);
    }
  });
  return {
    orgId,
    members,
    userWithRole(role) {
      const member = members.find((m) => m.role === role);
      if (!member) throw new Error(`org ${orgId} has no ${role}`);
      return member.userId;
    },
  };
}

export async function createAgent(
  pool: pg.Pool,
  orgId: string,
  fields: { name?: string; model?: string; instructions?: string } = {},
): Promise<string> {
  const agentId = randomUUID();
  await withServiceRole(pool, (tx) =>
    tx.query('insert into public.agents (id, org_id, name, model, instructions) values ($1, $2, $3, $4, $5)', [
      agentId,
      orgId,
      fields.name ?? 'Test agent',
      fields.model ?? 'test/model',
      fields.instructions ?? '',
    ]),
  );
  return agentId;
}

/** A run of `agentId` in `orgId`, optionally with its first `events` run_events (seq 1..n). */
export async function createRun(
  pool: pg.Pool,
  orgId: string,
  agentId: string,
  fields: { input?: string; createdBy?: string | null; idempotencyKey?: string | null; events?: number } = {},
): Promise<string> {
  const runId = randomUUID();
  await withServiceRole(pool, async (tx) => {
    await tx.query(
      `insert into public.agent_runs (id, org_id, agent_id, input, created_by, idempotency_key)
       values ($1, $2, $3, $4, $5, $6)`,
      [runId, orgId, agentId, fields.input ?? 'Test input', fields.createdBy ?? null, fields.idempotencyKey ?? null],
    );
    for (let seq = 1; seq <= (fields.events ?? 0); seq++) {
      await tx.query(
        `insert into public.run_events (org_id, run_id, seq, type, payload) values ($1, $2, $3, 'test', '{}'::jsonb)`,
        [orgId, runId, seq],
      );
    }
  });
  return runId;
}

export type Outcome = { rowCount: number; rows: Record<string, unknown>[] } | { errorCode: string; message: string };

/**
 * Runs one statement as `principal` in its own transaction and reports what happened, so a
 * test can assert "denied with 42501" and "affected 0 rows" with the same shape.
 */
export async function attempt(pool: pg.Pool, principal: Principal, sql: string, params: unknown[] = []): Promise<Outcome> {
  try {
    const result = await withPrincipal(pool, principal, (tx) => tx.query<Record<string, unknown>>(sql, params));
    return { rowCount: result.rowCount ?? 0, rows: result.rows };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code !== 'string') throw error;
    return { errorCode: code, message: (error as Error).message };
  }
}
