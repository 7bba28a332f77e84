import { createHash, randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { adminPool, appPool, createOrgWithMembers, type OrgFixture } from '../support/db.js';
import { connectTestTemporal, testLogger, type TestTemporal } from '../support/temporal.js';

const PROBLEM = 'https://gpt-agent-platform.dev/problems/';

let temporal: TestTemporal;
let pool: pg.Pool;
let admin: pg.Pool;
let app: App;

beforeAll(async () => {
  temporal = await connectTestTemporal();
  pool = appPool();
  admin = adminPool();
  app = await buildApp({ pool, temporal: temporal.client, logger: testLogger, auth: { jwtSecret: TEST_JWT_SECRET } });
});

afterAll(async () => {
  await app?.close();
  await temporal?.close();
  await pool?.end();
  await admin?.end();
});

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

function call(method: Method, url: string, credential: string, payload?: unknown) {
  return app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${credential}` },
    ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
  });
}

const emailOf = (userId: string) => `${userId}@example.test`;
const tokenFor = (userId: string) => signUserToken(userId, { email: emailOf(userId) });

/** An org with owner, admin and member, and a token for each. */
async function orgWithTokens(): Promise<OrgFixture & { owner: string; admin: string; member: string }> {
  const org = await createOrgWithMembers(admin, ['owner', 'admin', 'member']);
  return {
    ...org,
    owner: await tokenFor(org.userWithRole('owner')),
    admin: await tokenFor(org.userWithRole('admin')),
    member: await tokenFor(org.userWithRole('member')),
  };
}

async function auditActions(orgId: string): Promise<{ action: string; actor_type: string; actor_id: string | null; target_id: string | null; metadata: unknown }[]> {
  const { rows } = await admin.query(`select action, actor_type, actor_id, target_id, metadata from public.audit_log where org_id = $1 order by id`, [orgId]);
  return rows;
}

describe('organizations', () => {
  it('a signed-in user founds an organization and becomes its owner, recorded in the audit log', async () => {
    const founder = randomUUID();
    const token = await tokenFor(founder);

    const res = await call('POST', '/v1/orgs', token, { name: 'Acme Sales' });

    expect(res.statusCode).toBe(201);
    const org = res.json();
    expect(org).toEqual({ id: expect.any(String), name: 'Acme Sales', role: 'owner', createdAt: expect.any(String) });
    expect(res.headers.location).toBe(`/v1/orgs/${org.id}`);
    const { rows } = await admin.query(`select user_id, role from public.organization_members where org_id = $1`, [org.id]);
    expect(rows).toEqual([{ user_id: founder, role: 'owner' }]);
    expect(await auditActions(org.id)).toEqual([
      { action: 'organization.created', actor_type: 'user', actor_id: founder, target_id: org.id, metadata: { name: 'Acme Sales' } },
    ]);

    // The founder's membership records the verified token's email, so the console can show it.
    const members = await call('GET', `/v1/orgs/${org.id}/members`, token);
    expect(members.json()).toEqual({ items: [{ userId: founder, email: emailOf(founder), role: 'owner', createdAt: expect.any(String) }], nextCursor: null });

    const mine = await call('GET', '/v1/orgs', token);
    expect(mine.json()).toEqual({ items: [org], nextCursor: null });
    expect((await call('GET', `/v1/orgs/${org.id}`, token)).json()).toEqual(org);
  });

  it('lists only the caller’s organizations, paginated, with the caller’s role in each', async () => {
    const user = randomUUID();
    const token = await tokenFor(user);
    const created: string[] = [];
    for (const name of ['One', 'Two', 'Three']) created.push((await call('POST', '/v1/orgs', token, { name })).json().id);
    await orgWithTokens(); // someone else's org, never listed

    const first = await call('GET', '/v1/orgs?limit=2', token);
    expect(first.statusCode).toBe(200);
    expect(first.json().items.map((o: { name: string }) => o.name)).toEqual(['Three', 'Two']);
    const second = await call('GET', `/v1/orgs?limit=2&cursor=${first.json().nextCursor}`, token);
    expect(second.json()).toEqual({ items: [expect.objectContaining({ name: 'One', role: 'owner' })], nextCursor: null });
  });

  it("another org's id answers 404 on every organization route, and nothing changes", async () => {
    const a = await orgWithTokens();
    const b = await orgWithTokens();
    for (const [method, path, body] of [
      ['GET', '', undefined],
      ['PATCH', '', { name: 'hijacked' }],
      ['DELETE', '', undefined],
      ['GET', '/members', undefined],
      ['GET', `/members/${a.userWithRole('member')}`, undefined],
      ['PATCH', `/members/${a.userWithRole('member')}`, { role: 'admin' }],
      ['DELETE', `/members/${a.userWithRole('member')}`, undefined],
      ['POST', '/invites', { email: 'x@example.test' }],
      ['GET', '/invites', undefined],
      ['DELETE', `/invites/${randomUUID()}`, undefined],
      ['POST', '/api-keys', { name: 'k' }],
      ['GET', '/api-keys', undefined],
      ['DELETE', `/api-keys/${randomUUID()}`, undefined],
      ['GET', '/audit-log', undefined],
    ] as [Method, string, unknown][]) {
      const res = await call(method, `/v1/orgs/${a.orgId}${path}`, b.owner, body);
      expect({ route: `${method} ${path}`, status: res.statusCode, type: res.json().type }).toEqual({
        route: `${method} ${path}`,
        status: 404,
        type: `${PROBLEM}not-found`,
      });
    }
    const { rows } = await admin.query(`select name from public.organizations where id = $1`, [a.orgId]);
    expect(rows[0]?.name).not.toBe('hijacked');
    expect((await admin.query(`select count(*)::int as n from public.organization_members where org_id = $1`, [a.orgId])).rows[0]?.n).toBe(3);
  });

  it('admins rename, members may not; only an owner deletes, and everything the org owns goes with it', async () => {
    const org = await orgWithTokens();
    expect((await call('PATCH', `/v1/orgs/${org.orgId}`, org.member, { name: 'Nope' })).statusCode).toBe(403);
    const renamed = await call('PATCH', `/v1/orgs/${org.orgId}`, org.admin, { name: 'Renamed' });
    expect(renamed.json()).toMatchObject({ name: 'Renamed', role: 'admin' });

    const byAdmin = await call('DELETE', `/v1/orgs/${org.orgId}`, org.admin);
    expect(byAdmin.statusCode).toBe(403);
    expect(byAdmin.json().type).toBe(`${PROBLEM}forbidden`);

    const byOwner = await call('DELETE', `/v1/orgs/${org.orgId}`, org.owner);
    expect(byOwner.statusCode).toBe(204);
    expect((await call('GET', `/v1/orgs/${org.orgId}`, org.owner)).statusCode).toBe(404);
    const { rows } = await admin.query(
      `select (select count(*)::int from public.organizations where id = $1) as orgs,
              (select count(*)::int from public.organization_members where org_id = $1) as members,
              (select count(*)::int from public.audit_log where org_id = $1) as audit`,
      [org.orgId],
    );
    expect(rows[0]).toEqual({ orgs: 0, members: 0, audit: 0 });
  });

  it('rejects unknown and privileged fields on create', async () => {
    const token = await tokenFor(randomUUID());
    const res = await call('POST', '/v1/orgs', token, { name: 'X', id: randomUUID(), role: 'owner' });
    expect(res.statusCode).toBe(400);
    expect(res.json().type).toBe(`${PROBLEM}validation-error`);
  });
});

describe('members and roles', () => {
  it('members read the member list; a member gets 403 on admin routes', async () => {
    const org = await orgWithTokens();
    const list = await call('GET', `/v1/orgs/${org.orgId}/members`, org.member);
    expect(list.statusCode).toBe(200);
    expect(list.json().items).toHaveLength(3);

    const target = org.userWithRole('admin');
    for (const [method, path, body] of [
      ['PATCH', `/members/${target}`, { role: 'member' }],
      ['DELETE', `/members/${target}`, undefined],
      ['POST', '/invites', { email: 'new@example.test' }],
      ['GET', '/invites', undefined],
      ['POST', '/api-keys', { name: 'k' }],
      ['GET', '/api-keys', undefined],
      ['GET', '/audit-log', undefined],
      ['PATCH', '', { name: 'x' }],
      ['DELETE', '', undefined],
    ] as [Method, string, unknown][]) {
      const res = await call(method, `/v1/orgs/${org.orgId}${path}`, org.member, body);
      expect({ route: `${method} ${path}`, status: res.statusCode, type: res.json().type }).toEqual({
        route: `${method} ${path}`,
        status: 403,
        type: `${PROBLEM}forbidden`,
      });
    }
    expect((await admin.query(`select role from public.organization_members where user_id = $1`, [target])).rows[0]?.role).toBe('admin');
  });

  it('an admin promotes and demotes admins and members, but cannot touch the owner role', async () => {
    const org = await orgWithTokens();
    const member = org.userWithRole('member');
    const promoted = await call('PATCH', `/v1/orgs/${org.orgId}/members/${member}`, org.admin, { role: 'admin' });
    expect(promoted.json()).toMatchObject({ userId: member, role: 'admin' });

    expect((await call('PATCH', `/v1/orgs/${org.orgId}/members/${member}`, org.admin, { role: 'owner' })).statusCode).toBe(403);
    expect((await call('PATCH', `/v1/orgs/${org.orgId}/members/${org.userWithRole('owner')}`, org.admin, { role: 'member' })).statusCode).toBe(403);
    expect((await call('DELETE', `/v1/orgs/${org.orgId}/members/${org.userWithRole('owner')}`, org.admin)).statusCode).toBe(403);

    const audit = await auditActions(org.orgId);
    expect(audit).toEqual([
      { action: 'member.role_changed', actor_type: 'user', actor_id: org.userWithRole('admin'), target_id: member, metadata: { from: 'member', to: 'admin' } },
    ]);
  });

  it('an owner makes another owner; the last owner can be neither demoted, removed nor leave', async () => {
    const org = await orgWithTokens();
    const owner = org.userWithRole('owner');
    const demoteSelf = await call('PATCH', `/v1/orgs/${org.orgId}/members/${owner}`, org.owner, { role: 'admin' });
    expect(demoteSelf.statusCode).toBe(409);
    expect(demoteSelf.json().type).toBe(`${PROBLEM}conflict`);
    expect((await call('DELETE', `/v1/orgs/${org.orgId}/members/${owner}`, org.owner)).statusCode).toBe(409);

    const admin2 = org.userWithRole('admin');
    expect((await call('PATCH', `/v1/orgs/${org.orgId}/members/${admin2}`, org.owner, { role: 'owner' })).json().role).toBe('owner');
    // Two owners now: the first may leave, after which the second is the last.
    expect((await call('DELETE', `/v1/orgs/${org.orgId}/members/${owner}`, org.owner)).statusCode).toBe(204);
    expect((await call('DELETE', `/v1/orgs/${org.orgId}/members/${admin2}`, org.admin)).statusCode).toBe(409);

    const { rows } = await admin.query(`select user_id, role from public.organization_members where org_id = $1 and role = 'owner'`, [org.orgId]);
    expect(rows).toEqual([{ user_id: admin2, role: 'owner' }]);
    expect((await auditActions(org.orgId)).map((e) => e.action)).toEqual(['member.role_changed', 'member.left']);
  });

  it('a member leaves on their own; an admin removes a member', async () => {
    const org = await createOrgWithMembers(admin, ['owner', 'admin', 'member', 'member']);
    const [leaver, removed] = org.members.filter((m) => m.role === 'member').map((m) => m.userId) as [string, string];
    expect((await call('DELETE', `/v1/orgs/${org.orgId}/members/${leaver}`, await tokenFor(leaver))).statusCode).toBe(204);
    expect((await call('DELETE', `/v1/orgs/${org.orgId}/members/${removed}`, await tokenFor(org.userWithRole('admin')))).statusCode).toBe(204);
    const { rows } = await admin.query(`select count(*)::int as n from public.organization_members where org_id = $1`, [org.orgId]);
    expect(rows[0]?.n).toBe(2);
    expect((await auditActions(org.orgId)).map((e) => [e.action, e.actor_id, e.target_id])).toEqual([
      ['member.left', leaver, leaver],
      ['member.removed', org.userWithRole('admin'), removed],
    ]);
  });
});

describe('invites', () => {
  async function invite(org: { orgId: string; admin: string }, email: string, role: 'admin' | 'member' = 'member') {
    const res = await call('POST', `/v1/orgs/${org.orgId}/invites`, org.admin, { email, role });
    expect(res.statusCode).toBe(201);
    return res.json() as { id: string; token: string; status: string; email: string };
  }

  it('an invitee signed in with the invited email joins with the invited role; the token works once', async () => {
    const org = await orgWithTokens();
    const invitee = randomUUID();
    const created = await invite(org, emailOf(invitee).toUpperCase(), 'admin');
    expect(created).toMatchObject({ email: emailOf(invitee), role: 'admin', status: 'pending', token: expect.stringMatching(/^inv_/) });

    const { rows: stored } = await admin.query(`select token_hash from public.invites where id = $1`, [created.id]);
    expect(stored[0]?.token_hash).toEqual(createHash('sha256').update(created.token).digest());
    const listed = await call('GET', `/v1/orgs/${org.orgId}/invites`, org.admin);
    expect(listed.json().items[0]).not.toHaveProperty('token');

    const inviteeToken = await tokenFor(invitee);
    const accepted = await call('POST', '/v1/invites/accept', inviteeToken, { token: created.token });
    expect(accepted.statusCode).toBe(200);
    expect(accepted.json()).toEqual({ orgId: org.orgId, role: 'admin' });
    expect((await call('GET', `/v1/orgs/${org.orgId}`, inviteeToken)).json().role).toBe('admin');
    // Any member reads the invitee's email (from the accepting token, lower-cased); another org's
    // member still learns nothing.
    const joined = await call('GET', `/v1/orgs/${org.orgId}/members/${invitee}`, org.member);
    expect(joined.json()).toEqual({ userId: invitee, email: emailOf(invitee), role: 'admin', createdAt: expect.any(String) });
    const listed2 = await call('GET', `/v1/orgs/${org.orgId}/members`, org.member);
    expect(listed2.json().items).toContainEqual(expect.objectContaining({ userId: invitee, email: emailOf(invitee) }));
    const outsider = await orgWithTokens();
    const hidden = await call('GET', `/v1/orgs/${org.orgId}/members/${invitee}`, outsider.owner);
    expect({ status: hidden.statusCode, body: hidden.body }).toEqual({ status: 404, body: expect.not.stringContaining(emailOf(invitee)) });

    const again = await call('POST', '/v1/invites/accept', inviteeToken, { token: created.token });
    expect(again.statusCode).toBe(409);
    expect(again.json().type).toBe(`${PROBLEM}invite-used`);
    expect((await auditActions(org.orgId)).map((e) => e.action)).toEqual(['invite.created', 'invite.accepted', 'member.joined']);
  });

  it('someone signed in with another email cannot use the token', async () => {
    const org = await orgWithTokens();
    const created = await invite(org, 'someone@example.test');
    const stranger = randomUUID();
    const res = await call('POST', '/v1/invites/accept', await tokenFor(stranger), { token: created.token });
    expect(res.statusCode).toBe(404);
    const { rows } = await admin.query(`select count(*)::int as n from public.organization_members where user_id = $1`, [stranger]);
    expect(rows[0]?.n).toBe(0);
  });

  it('expired and revoked invites answer 410 invite-expired', async () => {
    const org = await orgWithTokens();
    const expiredUser = randomUUID();
    const expired = await invite(org, emailOf(expiredUser));
    await admin.query(`update public.invites set expires_at = now() - interval '1 minute' where id = $1`, [expired.id]);
    const res = await call('POST', '/v1/invites/accept', await tokenFor(expiredUser), { token: expired.token });
    expect(res.statusCode).toBe(410);
    expect(res.json().type).toBe(`${PROBLEM}invite-expired`);

    const revokedUser = randomUUID();
    const revoked = await invite(org, emailOf(revokedUser));
    expect((await call('DELETE', `/v1/orgs/${org.orgId}/invites/${revoked.id}`, org.admin)).statusCode).toBe(204);
    const afterRevoke = await call('POST', '/v1/invites/accept', await tokenFor(revokedUser), { token: revoked.token });
    expect(afterRevoke.statusCode).toBe(410);
    const { rows } = await admin.query(`select count(*)::int as n from public.organization_members where user_id = any($1::uuid[])`, [[expiredUser, revokedUser]]);
    expect(rows[0]?.n).toBe(0);
  });

  it('the database refuses self-joins without a pending invite, even for a caller with SQL access', async () => {
    const org = await orgWithTokens();
    const { withPrincipal } = await import('../../lib/db.js');
    const intruder = randomUUID();
    await expect(
      withPrincipal(pool, { kind: 'user', userId: intruder, email: emailOf(intruder) }, (tx) =>
        tx.query(`insert into public.organization_members (org_id, user_id, role) values ($1, $2, 'member')`, [org.orgId, intruder]),
      ),
    ).rejects.toMatchObject({ code: '42501' });
  });

  it("a member's stored email comes only from their own verified token: owners can neither write it nor get theirs stamped on someone else", async () => {
    const org = await orgWithTokens();
    const { withPrincipal } = await import('../../lib/db.js');
    const owner = { kind: 'user' as const, userId: org.userWithRole('owner'), email: emailOf(org.userWithRole('owner')) };
    const [labelled, added] = [randomUUID(), randomUUID()];
    await expect(
      withPrincipal(pool, owner, (tx) =>
        tx.query(`insert into public.organization_members (org_id, user_id, role, email) values ($1, $2, 'member', 'ceo@example.test')`, [org.orgId, labelled]),
      ),
    ).rejects.toMatchObject({ code: '42501' });
    await expect(
      withPrincipal(pool, owner, (tx) => tx.query(`update public.organization_members set email = 'x@example.test' where org_id = $1`, [org.orgId])),
    ).rejects.toMatchObject({ code: '42501' });
    await withPrincipal(pool, owner, (tx) => tx.query(`insert into public.organization_members (org_id, user_id, role) values ($1, $2, 'member')`, [org.orgId, added]));
    const shown = await call('GET', `/v1/orgs/${org.orgId}/members/${added}`, org.member);
    expect(shown.json()).toMatchObject({ userId: added, email: null });
  });
});

describe('API keys', () => {
  it('an admin creates a key shown once and stored as its SHA-256; the key acts for its org with member rights', async () => {
    const org = await orgWithTokens();
    const created = await call('POST', `/v1/orgs/${org.orgId}/api-keys`, org.admin, { name: 'CI' });
    expect(created.statusCode).toBe(201);
    const key = created.json();
    expect(key).toMatchObject({ name: 'CI', scope: 'member', createdBy: org.userWithRole('admin'), lastUsedAt: null, revokedAt: null });
    expect(key.key).toMatch(/^gap_live_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}$/);
    expect(key.key.startsWith(key.prefix)).toBe(true);

    const { rows } = await admin.query(`select * from public.api_keys where id = $1`, [key.id]);
    expect(rows[0]?.key_hash).toEqual(createHash('sha256').update(key.key).digest());
    expect(JSON.stringify(rows[0])).not.toContain(key.key.slice(18));

    const listed = await call('GET', `/v1/orgs/${org.orgId}/api-keys`, org.admin);
    expect(listed.json().items).toEqual([expect.objectContaining({ id: key.id, prefix: key.prefix })]);
    expect(listed.body).not.toContain(key.key);

    const asKey = await call('GET', `/v1/orgs/${org.orgId}`, key.key);
    expect(asKey.statusCode).toBe(200);
    expect(asKey.json().role).toBe('member');
    expect((await call('GET', `/v1/orgs/${org.orgId}/members`, key.key)).statusCode).toBe(200);
    expect((await call('GET', '/v1/orgs', key.key)).json().items.map((o: { id: string }) => o.id)).toEqual([org.orgId]);
    const { rows: used } = await admin.query(`select last_used_at from public.api_keys where id = $1`, [key.id]);
    expect(used[0]?.last_used_at).toBeInstanceOf(Date);

    const adminRoute = await call('GET', `/v1/orgs/${org.orgId}/api-keys`, key.key);
    expect(adminRoute.statusCode).toBe(403);
  });

  it('an admin-scoped key administers its org but cannot mint keys; revoking is recorded with the key as actor', async () => {
    const org = await orgWithTokens();
    const adminKey = (await call('POST', `/v1/orgs/${org.orgId}/api-keys`, org.owner, { name: 'ops', scope: 'admin' })).json();
    const memberKey = (await call('POST', `/v1/orgs/${org.orgId}/api-keys`, org.owner, { name: 'bot' })).json();

    expect((await call('GET', `/v1/orgs/${org.orgId}/api-keys`, adminKey.key)).statusCode).toBe(200);
    const mint = await call('POST', `/v1/orgs/${org.orgId}/api-keys`, adminKey.key, { name: 'more', scope: 'admin' });
    expect(mint.statusCode).toBe(403);
    expect((await call('POST', '/v1/orgs', adminKey.key, { name: 'x' })).statusCode).toBe(403);
    expect((await call('DELETE', `/v1/orgs/${org.orgId}`, adminKey.key)).statusCode).toBe(403);

    expect((await call('DELETE', `/v1/orgs/${org.orgId}/api-keys/${memberKey.id}`, adminKey.key)).statusCode).toBe(204);
    const revokedUse = await call('GET', `/v1/orgs/${org.orgId}`, memberKey.key);
    expect(revokedUse.statusCode).toBe(401);
    expect(revokedUse.json().type).toBe(`${PROBLEM}unauthenticated`);

    const audit = await auditActions(org.orgId);
    expect(audit.map((e) => [e.action, e.actor_type, e.actor_id])).toEqual([
      ['api_key.created', 'user', org.userWithRole('owner')],
      ['api_key.created', 'user', org.userWithRole('owner')],
      ['api_key.revoked', 'api_key', adminKey.id],
    ]);
  });

  it('a member cannot create keys, and an admin cannot create them in another org', async () => {
    const org = await orgWithTokens();
    const other = await orgWithTokens();
    expect((await call('POST', `/v1/orgs/${org.orgId}/api-keys`, org.member, { name: 'x' })).statusCode).toBe(403);
    expect((await call('POST', `/v1/orgs/${other.orgId}/api-keys`, org.admin, { name: 'x' })).statusCode).toBe(404);
    const { rows } = await admin.query(`select count(*)::int as n from public.api_keys where org_id = any($1::uuid[])`, [[org.orgId, other.orgId]]);
    expect(rows[0]?.n).toBe(0);
  });
});

describe('audit log', () => {
  it('admins page through it newest first; members get 403 and outsiders 404', async () => {
    const org = await orgWithTokens();
    for (const email of ['a@example.test', 'b@example.test', 'c@example.test']) {
      await call('POST', `/v1/orgs/${org.orgId}/invites`, org.admin, { email });
    }
    const first = await call('GET', `/v1/orgs/${org.orgId}/audit-log?limit=2`, org.admin);
    expect(first.statusCode).toBe(200);
    const page1 = first.json();
    expect(page1.items.map((e: { metadata: { email: string } }) => e.metadata.email)).toEqual(['c@example.test', 'b@example.test']);
    expect(page1.items[0]).toMatchObject({
      actor: { type: 'user', id: org.userWithRole('admin') },
      action: 'invite.created',
      target: { type: 'invite', id: expect.any(String) },
    });
    const page2 = (await call('GET', `/v1/orgs/${org.orgId}/audit-log?limit=2&cursor=${page1.nextCursor}`, org.admin)).json();
    expect(page2.items.map((e: { metadata: { email: string } }) => e.metadata.email)).toEqual(['a@example.test']);
    expect(page2.nextCursor).toBeNull();

    expect((await call('GET', `/v1/orgs/${org.orgId}/audit-log`, org.member)).statusCode).toBe(403);
    const outsider = await orgWithTokens();
    expect((await call('GET', `/v1/orgs/${org.orgId}/audit-log`, outsider.owner)).statusCode).toBe(404);
  });

  it('is append-only: nobody acting through the application can edit or delete entries', async () => {
    const org = await orgWithTokens();
    await call('POST', `/v1/orgs/${org.orgId}/invites`, org.admin, { email: 'x@example.test' });
    const { withPrincipal } = await import('../../lib/db.js');
    for (const sql of [`update public.audit_log set action = 'x.y' where org_id = $1`, `delete from public.audit_log where org_id = $1`]) {
      await expect(
        withPrincipal(pool, { kind: 'user', userId: org.userWithRole('owner') }, (tx) => tx.query(sql, [org.orgId])),
      ).rejects.toMatchObject({ code: '42501' });
    }
    expect((await auditActions(org.orgId)).map((e) => e.action)).toEqual(['invite.created']);
  });
});
