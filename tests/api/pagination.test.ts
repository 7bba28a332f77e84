/**
 * Keyset pagination over (created_at, id) when created_at ties or differs below a millisecond:
 * rows written in one statement share now(), and timestamptz keeps microseconds. A walk
 * (limit=2, following nextCursor) must serve every row exactly once, in the list's order.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { withServiceRole } from '../../lib/db.js';
import { encodeKeysetCursor } from '../../api/pagination.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { adminPool, appPool, createAgent, createOrgWithMembers } from '../support/db.js';
import { connectTestTemporal, testLogger, type TestTemporal } from '../support/temporal.js';

describe('keyset pagination below the millisecond', () => {
  let temporal: TestTemporal;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let app: App;
  let orgId: string;
  let token: string;

  beforeAll(async () => {
    temporal = await connectTestTemporal();
    pool = appPool({ max: 2 });
    admin = adminPool({ max: 2 });
    app = await buildApp({ pool, temporal: temporal.client, logger: testLogger, auth: { jwtSecret: TEST_JWT_SECRET } });
    const org = await createOrgWithMembers(admin, ['owner']);
    orgId = org.orgId;
    token = await signUserToken(org.userWithRole('owner'));
  });

  afterAll(async () => {
    await app?.close();
    await pool?.end();
    await admin?.end();
    await temporal?.close();
  });

  /** Every id served by walking `url` two at a time. */
  async function walk(url: string, key: 'id' | 'userId' = 'id'): Promise<string[]> {
    const served: string[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 50; pages++) {
      const res: Awaited<ReturnType<App['inject']>> = await app.inject({ method: 'GET', url: `${url}${url.includes('?') ? '&' : '?'}limit=2${cursor ? `&cursor=${cursor}` : ''}`, headers: { authorization: `Bearer ${token}` } });
      expect(res.statusCode).toBe(200);
      const body: { items: Record<string, string>[]; nextCursor: string | null } = res.json();
      served.push(...body.items.map((i) => i[key]!));
      cursor = body.nextCursor;
      if (!cursor) break;
    }
    return served;
  }

  it('serves agents created in one statement (one now()) each once, newest-id first', async () => {
    const { rows } = await withServiceRole(admin, (tx) =>
      tx.query<{ id: string }>(
        `insert into public.agents (id, org_id, name, model, instructions)
         select gen_random_uuid(), $1, 'Seeded ' || n, 'test/model', '' from generate_series(1, 7) n returning id`,
        [orgId],
      ),
    );
    const ids = rows.map((r) => r.id);
    expect(await walk(`/v1/orgs/${orgId}/agents`)).toEqual([...ids].sort().reverse());
  });

  // Each seeded by one statement, so all seven share now(); the list sorts by (created_at, id) desc.
  const seeds: Record<'invites' | 'api-keys' | 'members', string> = {
    invites: `insert into public.invites (org_id, email, role, token_hash, expires_at)
              select $1, 'seed' || n || '@example.com', 'member', sha256(gen_random_uuid()::text::bytea), now() + interval '1 day'
                from generate_series(1, 7) n returning id`,
    'api-keys': `insert into public.api_keys (org_id, name, prefix, key_hash)
                 select $1, 'Seed ' || n, 'gap_live_' || substr(md5(gen_random_uuid()::text), 1, 8), sha256(gen_random_uuid()::text::bytea)
                   from generate_series(1, 7) n returning id`,
    members: `insert into public.organization_members (org_id, user_id, role, email)
              select $1, gen_random_uuid(), 'member', 'member' || n || '@example.com' from generate_series(1, 7) n returning user_id as id`,
  };
  for (const [list, sql] of Object.entries(seeds)) {
    it(`serves ${list} created in one statement each once`, async () => {
      const { rows } = await withServiceRole(admin, (tx) => tx.query<{ id: string }>(sql, [orgId]));
      const served = await walk(`/v1/orgs/${orgId}/${list}`, list === 'members' ? 'userId' : 'id');
      // The owner's own membership (created earlier) comes after the seeded seven.
      expect(served.slice(0, 7)).toEqual(rows.map((r) => r.id).sort().reverse());
      expect(new Set(served).size).toBe(served.length);
    });
  }

  it('pages by an index range scan with a microsecond cursor, no sort (invites: index on org_id, created_at desc, id desc)', async () => {
    const plan = await withServiceRole(admin, async (tx) => {
      // A seven-row table is cheaper to scan than to look up; only the plan's shape is under test.
      await tx.query('set local enable_seqscan = off');
      const { rows } = await tx.query<{ 'QUERY PLAN': string }>(
        `explain select id from public.invites where org_id = $1 and ($2::timestamptz is null or (created_at, id) < ($2::timestamptz, $3::uuid))
          order by created_at desc, id desc limit 3`,
        [orgId, '2026-03-01T12:00:00.123456Z', randomUUID()],
      );
      return rows.map((r) => r['QUERY PLAN']).join('\n');
    });
    expect(plan).toMatch(/Index (Only )?Scan using invites_org_id_created_at_idx/);
    expect(plan).not.toMatch(/Sort/);
  });

  it('serves runs whose created_at differ by microseconds within one millisecond each once, newest first', async () => {
    const agentId = await createAgent(admin, orgId, { name: 'Runner' });
    // Inserted in shuffled order so neither insertion order nor id order gives the answer.
    const micros = [123456, 123001, 123999, 123456, 123200, 123000, 123457];
    const created: { id: string; at: string }[] = [];
    for (const us of micros) {
      const id = randomUUID();
      const at = `2026-03-01T12:00:00.${String(us).padStart(6, '0')}Z`;
      await withServiceRole(admin, (tx) => tx.query(`insert into public.agent_runs (id, org_id, agent_id, input, created_at) values ($1, $2, $3, '', $4)`, [id, orgId, agentId, at]));
      created.push({ id, at });
    }
    const expected = created.sort((a, b) => (a.at === b.at ? (a.id < b.id ? 1 : -1) : a.at < b.at ? 1 : -1)).map((r) => r.id);
    expect(await walk(`/v1/orgs/${orgId}/runs?agentId=${agentId}`)).toEqual(expected);
  });

  it('still reads a cursor a client kept from before (milliseconds), and refuses a malformed one', async () => {
    const agentId = await createAgent(admin, orgId, { name: 'Old cursor' });
    const old = encodeKeysetCursor({ createdAt: '2999-01-01T00:00:00.000Z', id: randomUUID() });
    const res = await app.inject({ method: 'GET', url: `/v1/orgs/${orgId}/runs?agentId=${agentId}&cursor=${old}`, headers: { authorization: `Bearer ${token}` } });
    expect(res.statusCode).toBe(200);
    const bad = encodeKeysetCursor({ createdAt: 'yesterday', id: randomUUID() });
    const refused = await app.inject({ method: 'GET', url: `/v1/orgs/${orgId}/runs?cursor=${bad}`, headers: { authorization: `Bearer ${token}` } });
    expect(refused.statusCode).toBe(400);
  });
});
