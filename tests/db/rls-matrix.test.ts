import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withPrincipal, withServiceRole } from '../../lib/db.js';
import type { Principal } from '../../lib/principal.js';
import { adminPool, appPool } from '../support/db.js';
import { ACTORS, createWorld, expectations, transitions, type Actor, type Operation, type RowRef, type TableExpectation, type TransitionActor, type World } from './rls-expectations.js';

// The RLS matrix: every table the catalog lists in public × SELECT/INSERT/UPDATE/DELETE × every
// kind of principal, against the expectations declared in rls-expectations.ts. Actors run through
// the application's login role (authenticator) exactly as the API and workers do; service_role
// runs through the superuser connection, the only one allowed to switch to it. Outcomes are
// checked through the superuser connection, never through the actor under test.

const admin = adminPool({ max: 4 });
const app = appPool({ max: 4 });

const { rows: catalog } = await admin.query<{ relname: string }>(`
  select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
  where n.nspname = 'public' and c.relkind in ('r', 'p') order by 1`);
const publicTables = catalog.map((row) => row.relname);

/** The org that "other org" actors belong to. */
let otherWorld: World;
/** Shared by cells that cannot change anything they would need (reads, inserts, refused writes). */
let sharedWorld: World;

beforeAll(async () => {
  otherWorld = await createWorld(admin);
  sharedWorld = await createWorld(admin);
});

afterAll(async () => {
  await app.end();
  await admin.end();
});

const emailOf = (userId: string) => `${userId}@example.test`;
const user = (userId: string): Principal => ({ kind: 'user', userId, email: emailOf(userId) });

function principalOf(actor: Exclude<Actor, 'serviceRole'>, w: World): Principal {
  switch (actor) {
    case 'owner':
      return user(w.ownerId);
    case 'admin':
      return user(w.adminId);
    case 'member':
      return user(w.memberId);
    case 'otherOrgOwner':
      return user(otherWorld.ownerId);
    case 'noMembership':
      return user(randomUUID());
    case 'anon':
      return { kind: 'anon' };
    case 'apiKeyMember':
      return { kind: 'api_key', orgId: w.orgId, keyId: randomUUID(), scope: 'member' };
    case 'apiKeyAdmin':
      return { kind: 'api_key', orgId: w.orgId, keyId: randomUUID(), scope: 'admin' };
    case 'apiKeyOtherOrg':
      return { kind: 'api_key', orgId: otherWorld.orgId, keyId: randomUUID(), scope: 'admin' };
    case 'workerOwnOrg':
      return { kind: 'worker', orgId: w.orgId };
    case 'workerOtherOrg':
      return { kind: 'worker', orgId: otherWorld.orgId };
  }
}

type Outcome = { rowCount: number } | { errorCode: string; message: string };

async function run(actor: TransitionActor, w: World, sql: string, params: unknown[]): Promise<Outcome> {
  try {
    const result =
      actor === 'serviceRole'
        ? await withServiceRole(admin, (tx) => tx.query(sql, params))
        : await withPrincipal(app, actor === 'invitee' ? user(w.inviteeId) : principalOf(actor, w), (tx) => tx.query(sql, params));
    return { rowCount: result.rowCount ?? 0 };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code !== 'string') throw error;
    return { errorCode: code, message: (error as Error).message };
  }
}

async function snapshot(table: string, row: RowRef): Promise<unknown[]> {
  const { rows } = await admin.query(`select to_jsonb(t) as row from public.${pg.escapeIdentifier(table)} t where ${row.where}`, row.params);
  return rows.map((r) => r.row);
}

/** Refused: nothing seen or done, either filtered by a policy (0 rows) or denied outright (42501). */
function expectRefused(outcome: Outcome) {
  if ('errorCode' in outcome) expect(outcome.errorCode, outcome.message).toBe('42501');
  else expect(outcome.rowCount).toBe(0);
}

function expectSucceeded(outcome: Outcome, rows: number) {
  expect(outcome, 'errorCode' in outcome ? outcome.message : undefined).toEqual({ rowCount: rows });
}

it('declares expectations for every table in public', () => {
  expect(publicTables.filter((table) => !(table in expectations))).toEqual([]);
});

it('declares no expectations for tables that do not exist', () => {
  expect(Object.keys(expectations).filter((table) => !publicTables.includes(table))).toEqual([]);
});

// The matrix seeds hundreds of rows into one world; keys scoped to a world (usage days, event
// seqs) must never collide, or a fresh clone's run fails at random (issue 12, item 7).
it('seeds rows with keys that never collide within one world', async () => {
  const w = await createWorld(admin);
  const tables = ['usage_daily', 'run_events', 'run_approvals', 'crm_reply_sends'] as const;
  for (const table of tables) {
    const expectation = expectations[table]!;
    // 300 draws per table: a random day in a year would collide within ~25 (birthday bound);
    // more only costs time on a loaded machine without proving more.
    for (let i = 0; i < 300; i++) {
      await expectation.seed(admin, w);
      const insert = await expectation.insert(admin, w);
      await admin.query(insert.sql, insert.params);
    }
  }
  const { rows } = await admin.query<{ n: string }>(`select count(*) as n from public.usage_daily where org_id = $1`, [w.orgId]);
  expect(Number(rows[0]!.n)).toBe(600);
}, 120_000);

describe.each(publicTables)('%s', (table) => {
  const expectation = (): TableExpectation => {
    const declared = expectations[table];
    if (!declared) throw new Error(`no RLS expectations declared for public.${table}: add an entry to tests/db/rls-expectations.ts`);
    return declared;
  };
  const qualified = `public.${pg.escapeIdentifier(table)}`;
  const allowed = (op: Operation, actor: Actor) => expectation().allow[op].includes(actor);

  let readable: RowRef;
  beforeAll(async () => {
    if (expectations[table]) readable = await expectation().seed(admin, sharedWorld);
  });

  it.each(ACTORS)('SELECT by %s', async (actor) => {
    const outcome = await run(actor, sharedWorld, `select 1 from ${qualified} where ${readable.where}`, readable.params);
    if (allowed('select', actor)) expectSucceeded(outcome, 1);
    else expectRefused(outcome);
  });

  it.each(ACTORS)('INSERT by %s', async (actor) => {
    const statement = await expectation().insert(admin, sharedWorld);
    const outcome = await run(actor, sharedWorld, statement.sql, statement.params);
    if (allowed('insert', actor)) expectSucceeded(outcome, 1);
    else expect(outcome).toMatchObject({ errorCode: '42501' });
  });

  it.each(ACTORS)('UPDATE by %s', async (actor) => {
    // A permitted write gets a world of its own, so it cannot disturb other cells.
    const world = allowed('update', actor) ? await createWorld(admin) : sharedWorld;
    const row = await expectation().seed(admin, world);
    const before = await snapshot(table, row);
    expect(before).toHaveLength(1);
    const outcome = await run(actor, world, `update ${qualified} set ${expectation().update} where ${row.where}`, row.params);
    const after = await snapshot(table, row);
    if (allowed('update', actor)) {
      expectSucceeded(outcome, 1);
      expect(after).not.toEqual(before);
    } else {
      expectRefused(outcome);
      expect(after).toEqual(before);
    }
  });

  it.each(ACTORS)('DELETE by %s', async (actor) => {
    const world = allowed('delete', actor) ? await createWorld(admin) : sharedWorld;
    const row = await expectation().seed(admin, world);
    const before = await snapshot(table, row);
    expect(before).toHaveLength(1);
    const outcome = await run(actor, world, `delete from ${qualified} where ${row.where}`, row.params);
    const after = await snapshot(table, row);
    if (allowed('delete', actor)) {
      expectSucceeded(outcome, 1);
      expect(after).toEqual([]);
    } else {
      expectRefused(outcome);
      expect(after).toEqual(before);
    }
  });
});

describe('one-way transitions', () => {
  describe.each(transitions)('$name', (transition) => {
    it.each(transition.refused)('refused for %s', async (actor) => {
      const world = await createWorld(admin);
      const row = await transition.seed(admin, world);
      const before = await snapshot(transition.table, row);
      expect(before).toHaveLength(1);
      const statement = transition.attempt(world, row);
      expectRefused(await run(actor, world, statement.sql, statement.params));
      expect(await snapshot(transition.table, row)).toEqual(before);
    });

    if (transition.allowed) it.each(transition.allowed)('allowed for %s', async (actor) => {
      const world = await createWorld(admin);
      const row = await transition.seed(admin, world);
      const before = await snapshot(transition.table, row);
      const statement = transition.attempt(world, row);
      expectSucceeded(await run(actor, world, statement.sql, statement.params), 1);
      expect(await snapshot(transition.table, row)).not.toEqual(before);
    });
  });
});
