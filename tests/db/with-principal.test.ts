import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, TransactionRolledBackError, withPrincipal } from '../../lib/db.js';
import { databaseSettingsFor, InvalidPrincipalError } from '../../lib/principal.js';
import { adminPool, appDatabaseUrl, createAgent, createOrgWithMembers, type OrgFixture } from '../support/db.js';

const admin = adminPool({ max: 2 });
let org: OrgFixture;
let agentId: string;

beforeAll(async () => {
  org = await createOrgWithMembers(admin, ['owner']);
  agentId = await createAgent(admin, org.orgId, { name: 'Original' });
});

afterAll(() => admin.end());

describe('withPrincipal on a pooled connection', () => {
  it('leaves nothing behind for the next transaction on the same connection', async () => {
    const pool = createPool(appDatabaseUrl(), { max: 1 });
    try {
      const owner = org.userWithRole('owner');
      const asUser = await withPrincipal(pool, { kind: 'user', userId: owner }, async (tx) => {
        const { rows } = await tx.query(
          'select pg_backend_pid() as pid, auth.uid() as uid, (select count(*)::int from public.agents where id = $1) as agents',
          [agentId],
        );
        return rows[0];
      });
      expect(asUser).toMatchObject({ uid: owner, agents: 1 });

      const asAnon = await withPrincipal(pool, { kind: 'anon' }, async (tx) => {
        const { rows } = await tx.query(
          `select pg_backend_pid() as pid, current_user as role, auth.uid() as uid, auth.jwt() as claims,
                  current_setting('statement_timeout') as timeout`,
        );
        await tx.query('savepoint probe');
        const agents = await tx.query('select count(*) from public.agents').then(
          () => 'readable',
          async (error: { code?: string }) => {
            await tx.query('rollback to savepoint probe');
            return error.code;
          },
        );
        return { ...rows[0], agents };
      });
      expect(asAnon).toEqual({
        pid: asUser.pid,
        role: 'anon',
        uid: null,
        claims: { role: 'anon' },
        timeout: '3s',
        agents: '42501',
      });

      // Outside any principal transaction the connection is authenticator again, with no claims.
      const { rows } = await pool.query(
        `select pg_backend_pid() as pid, current_user as role, current_setting('request.jwt.claims', true) as claims`,
      );
      expect(rows[0]).toEqual({ pid: asUser.pid, role: 'authenticator', claims: '' });
    } finally {
      await pool.end();
    }
  });

  it('carries claims with quotes, backslashes and SQL in them verbatim (they are sent as escaped literals)', async () => {
    const pool = createPool(appDatabaseUrl(), { max: 1 });
    try {
      const owner = org.userWithRole('owner');
      const email = `o'brien\\"x'); drop table public.agents; --@example.com`;
      const seen = await withPrincipal(pool, { kind: 'user', userId: owner, email }, async (tx) => {
        const { rows } = await tx.query(`select auth.jwt() ->> 'email' as email, auth.uid() as uid, current_user as role, current_setting('statement_timeout') as timeout`);
        return rows[0];
      });
      expect(seen).toEqual({ email, uid: owner, role: 'authenticated', timeout: '8s' });
      const { rows } = await admin.query(`select count(*)::int as n from public.agents where id = $1`, [agentId]);
      expect(rows[0].n).toBe(1);
    } finally {
      await pool.end();
    }
  });

  it('skips the WAL flush only for the transaction that asks, and the setting does not outlive it', async () => {
    const pool = createPool(appDatabaseUrl(), { max: 1 });
    try {
      const worker = { kind: 'worker', orgId: org.orgId } as const;
      const setting = (tx: { query: (sql: string) => Promise<{ rows: Array<{ s: string }> }> }) =>
        tx.query(`select current_setting('synchronous_commit') as s`).then((r) => r.rows[0]!.s);
      expect(await withPrincipal(pool, worker, setting, { skipWalFlushOnCommit: true })).toBe('off');
      expect(await withPrincipal(pool, worker, setting)).toBe('on');
    } finally {
      await pool.end();
    }
  });

  it('rolls back everything when the callback throws', async () => {
    const pool = createPool(appDatabaseUrl(), { max: 1 });
    try {
      const owner = { kind: 'user', userId: org.userWithRole('owner') } as const;
      await expect(
        withPrincipal(pool, owner, async (tx) => {
          await tx.query(`update public.agents set name = 'Changed' where id = $1`, [agentId]);
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      const { rows } = await admin.query('select name from public.agents where id = $1', [agentId]);
      expect(rows[0]?.name).toBe('Original');
    } finally {
      await pool.end();
    }
  });

  it('refuses to report success when a caught statement error aborted the transaction', async () => {
    const pool = createPool(appDatabaseUrl(), { max: 1 });
    try {
      const owner = { kind: 'user', userId: org.userWithRole('owner') } as const;
      await expect(
        withPrincipal(pool, owner, async (tx) => {
          await tx.query(`update public.agents set name = 'Changed' where id = $1`, [agentId]);
          await tx.query('select 1/0').catch(() => undefined);
          return 'looks fine';
        }),
      ).rejects.toBeInstanceOf(TransactionRolledBackError);
      const { rows } = await admin.query('select name from public.agents where id = $1', [agentId]);
      expect(rows[0]?.name).toBe('Original');
    } finally {
      await pool.end();
    }
  });

  it('does not return a connection whose rollback failed to the pool', async () => {
    const pool = createPool(appDatabaseUrl(), { max: 1 });
    try {
      const firstPid = await withPrincipal(pool, { kind: 'anon' }, async (tx) => {
        const { rows } = await tx.query<{ pid: number }>('select pg_backend_pid() as pid');
        return rows[0]?.pid;
      });
      await expect(
        withPrincipal(pool, { kind: 'anon' }, async () => {
          await admin.query('select pg_terminate_backend($1)', [firstPid]);
          throw new Error('connection lost mid-transaction');
        }),
      ).rejects.toThrow('connection lost mid-transaction');
      const secondPid = await withPrincipal(pool, { kind: 'anon' }, async (tx) => {
        const { rows } = await tx.query<{ pid: number }>('select pg_backend_pid() as pid');
        return rows[0]?.pid;
      });
      expect(secondPid).toBeTypeOf('number');
      expect(secondPid).not.toBe(firstPid);
    } finally {
      await pool.end();
    }
  });
});

describe('databaseSettingsFor', () => {
  it('builds claims from the principal alone', () => {
    const userId = '6f9619ff-8b86-d011-b42d-00cf4fc964ff';
    expect(databaseSettingsFor({ kind: 'user', userId, email: 'a@example.com' })).toEqual({
      role: 'authenticated',
      claims: { sub: userId, email: 'a@example.com', role: 'authenticated', principal: 'user' },
    });
    expect(databaseSettingsFor({ kind: 'worker', orgId: userId })).toEqual({
      role: 'authenticated',
      claims: { role: 'authenticated', principal: 'worker', org_id: userId },
    });
    expect(databaseSettingsFor({ kind: 'anon' })).toEqual({ role: 'anon', claims: { role: 'anon' } });
  });

  it('rejects ids that are not UUIDs before any statement runs', () => {
    expect(() => databaseSettingsFor({ kind: 'user', userId: "x' or 1=1" })).toThrow(InvalidPrincipalError);
    expect(() => databaseSettingsFor({ kind: 'worker', orgId: '' })).toThrow(InvalidPrincipalError);
  });
});
