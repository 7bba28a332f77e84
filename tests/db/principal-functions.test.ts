import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withPrincipal, withServiceRole } from '../../lib/db.js';
import type { Principal } from '../../lib/principal.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';

/**
 * The principal helpers every RLS policy and audit default calls (private.org_ids_for,
 * worker_org_id, user_id, user_email, actor_type, actor_id), asked directly for every kind of
 * principal. The RLS matrix proves what the policies allow; this pins the helpers' own answers,
 * so a rewrite of one (they moved from SQL to PL/pgSQL for speed) cannot change who sees what.
 */
const admin = adminPool({ max: 2 });
const app = appPool({ max: 2 });
let orgA: string;
let orgB: string;
let user: string;

beforeAll(async () => {
  const a = await createOrgWithMembers(admin, ['owner']);
  const b = await createOrgWithMembers(admin, ['admin']);
  orgA = a.orgId;
  orgB = b.orgId;
  user = a.userWithRole('owner');
  // The same person is an owner of A and a plain member of B.
  await withServiceRole(admin, (tx) =>
    tx.query(`insert into public.organization_members (org_id, user_id, role) values ($1, $2, 'member')`, [orgB, user]),
  );
});

afterAll(async () => {
  await app.end();
  await admin.end();
});

interface Answers {
  member: string[];
  admin: string[];
  owner: string[];
  bogus: string[];
  workerOrgId: string | null;
  userId: string | null;
  userEmail: string | null;
  actorType: string;
  actorId: string | null;
}

const ask = (tx: { query: (sql: string) => Promise<{ rows: Array<Record<string, unknown>> }> }) =>
  tx
    .query(
      `select array(select private.org_ids_for('member') order by 1)::text[] as member,
              array(select private.org_ids_for('admin') order by 1)::text[] as admin,
              array(select private.org_ids_for('owner') order by 1)::text[] as owner,
              array(select private.org_ids_for('superuser') order by 1)::text[] as bogus,
              private.worker_org_id()::text as "workerOrgId",
              private.user_id()::text as "userId",
              private.user_email() as "userEmail",
              private.actor_type() as "actorType",
              private.actor_id() as "actorId"`,
    )
    .then(({ rows }) => rows[0] as unknown as Answers);

const asPrincipal = (principal: Principal) => withPrincipal(app, principal, ask);
const sorted = (...ids: string[]) => [...ids].sort();

describe('principal helpers', () => {
  it('a user acts for the orgs whose membership ranks high enough', async () => {
    expect(await asPrincipal({ kind: 'user', userId: user, email: 'Sales.Lead@Example.COM' })).toEqual({
      member: sorted(orgA, orgB),
      admin: [orgA],
      owner: [orgA],
      bogus: [],
      workerOrgId: null,
      userId: user,
      userEmail: 'sales.lead@example.com',
      actorType: 'user',
      actorId: user,
    });
  });

  it('a user without memberships acts for no org, and an empty email is no email', async () => {
    const stranger = randomUUID();
    expect(await asPrincipal({ kind: 'user', userId: stranger, email: '' })).toEqual({
      member: [],
      admin: [],
      owner: [],
      bogus: [],
      workerOrgId: null,
      userId: stranger,
      userEmail: null,
      actorType: 'user',
      actorId: stranger,
    });
  });

  it('a worker acts for its one org, and only with member rights', async () => {
    expect(await asPrincipal({ kind: 'worker', orgId: orgA })).toEqual({
      member: [orgA],
      admin: [],
      owner: [],
      bogus: [],
      workerOrgId: orgA,
      userId: null,
      userEmail: null,
      actorType: 'worker',
      actorId: orgA,
    });
  });

  it('an API key acts for its org as member, as admin only with admin scope, never as owner', async () => {
    const keyId = randomUUID();
    const common = { bogus: [], owner: [], workerOrgId: null, userId: null, userEmail: null, actorType: 'api_key', actorId: keyId };
    expect(await asPrincipal({ kind: 'api_key', orgId: orgB, keyId, scope: 'member' })).toEqual({ ...common, member: [orgB], admin: [] });
    expect(await asPrincipal({ kind: 'api_key', orgId: orgB, keyId, scope: 'admin' })).toEqual({ ...common, member: [orgB], admin: [orgB] });
  });

  it('claims without a principal (a bare Supabase token of a member) act for nobody', async () => {
    const client = await app.connect();
    try {
      await client.query('begin');
      await client.query(`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)`, [
        JSON.stringify({ sub: user, role: 'authenticated', org_id: orgA, scope: 'admin' }),
      ]);
      expect(await ask(client)).toEqual({
        member: [],
        admin: [],
        owner: [],
        bogus: [],
        workerOrgId: null,
        userId: null,
        userEmail: null,
        actorType: 'system',
        actorId: null,
      });
    } finally {
      await client.query('rollback');
      client.release();
    }
  });
});
