import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { createPool, MAX_PREPARED_STATEMENTS_PER_CONNECTION, autocommitAsPrincipal, TransactionRolledBackError, withPrincipal, withServiceRole } from '../../lib/db.js';
import { databaseSettingsFor, InvalidPrincipalError } from '../../lib/principal.js';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { adminDatabaseUrl, adminPool, appDatabaseUrl, createAgent, createOrgWithMembers, testPoolMode, type OrgFixture } from '../support/db.js';

const admin = adminPool({ max: 2 });
let org: OrgFixture;
let agentId: string;

beforeAll(async () => {
  org = await createOrgWithMembers(admin, ['owner']);
  agentId = await createAgent(admin, org.orgId, { name: 'Original' });
});

afterAll(() => admin.end());

/**
 * A TCP proxy in front of the test database that counts round trips: a client write that follows
 * an answer of the server starts a new one. Counting, not timing, so a loaded machine cannot add
 * a trip. Answers are held for `delayMs` so that statements a client pipelines (written back to
 * back) all reach the proxy before any answer does, whatever the scheduler does.
 */
async function startSlowProxy(databaseUrl: string, delayMs: number): Promise<{ url: string; roundTrips(): number; close(): Promise<void> }> {
  const target = new URL(databaseUrl);
  const sockets = new Set<Socket>();
  let roundTrips = 0;
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
      s.on('close', () => sockets.delete(s));
    }
    let answered = true;
    client.on('data', (chunk) => {
      if (answered) roundTrips++;
      answered = false;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) =>
      setTimeout(() => {
        answered = true;
        client.write(chunk);
      }, delayMs),
    );
    client.on('end', () => upstream.end());
    upstream.on('end', () => setTimeout(() => client.end(), delayMs));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as AddressInfo).port);
  return {
    url: url.toString(),
    roundTrips: () => roundTrips,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const testPool = (opts: Parameters<typeof createPool>[1] = {}) => createPool(appDatabaseUrl(), { ...testPoolMode(), max: 1, ...opts });

describe('withPrincipal on a pooled connection', () => {
  it('leaves nothing behind for the next transaction on the same connection', async () => {
    const pool = testPool();
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
    const pool = testPool();
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
    const pool = testPool();
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
    const pool = testPool();
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
    const pool = testPool();
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

  it('sends BEGIN with the first statement (one round trip fewer in pipeline mode) and nothing for an empty transaction', async () => {
    const delayMs = 50;
    const proxy = await startSlowProxy(appDatabaseUrl(), delayMs);
    try {
      const owner = { kind: 'user', userId: org.userWithRole('owner') } as const;
      for (const pipeline of [true, false]) {
        const pool = createPool(proxy.url, { max: 1, pipeline });
        try {
          // Connect and prepare first: only the transaction's own round trips are counted.
          await withPrincipal(pool, owner, (tx) => tx.query('select name from public.agents where id = $1', [agentId]));
          const counted = async <T>(fn: () => Promise<T>) => {
            const before = proxy.roundTrips();
            const value = await fn();
            return { value, roundTrips: proxy.roundTrips() - before };
          };
          const read = await counted(() => withPrincipal(pool, owner, (tx) => tx.query<{ name: string }>('select name from public.agents where id = $1', [agentId])));
          expect(read.value.rows).toEqual([{ name: 'Original' }]);
          // Pipelined: BEGIN + statement, then COMMIT. Plain: BEGIN, statement, COMMIT.
          expect(read.roundTrips, `pipeline ${pipeline}`).toBe(pipeline ? 2 : 3);
          const one = await counted(() => autocommitAsPrincipal(pool, owner, 'select name from public.agents where id = $1', [agentId]));
          expect(one.value.rows).toEqual([{ name: 'Original' }]);
          expect(one.roundTrips, `pipeline ${pipeline}`).toBe(pipeline ? 1 : 3);
          const empty = await counted(() => withPrincipal(pool, owner, async () => 'no statement'));
          expect(empty).toEqual({ value: 'no statement', roundTrips: 0 });
        } finally {
          await pool.end();
        }
      }
    } finally {
      await proxy.close();
    }
  });

  it('does not return a connection whose rollback failed to the pool', async () => {
    const pool = testPool();
    try {
      const firstPid = await withPrincipal(pool, { kind: 'anon' }, async (tx) => {
        const { rows } = await tx.query<{ pid: number }>('select pg_backend_pid() as pid');
        return rows[0]?.pid;
      });
      await expect(
        withPrincipal(pool, { kind: 'anon' }, async (tx) => {
          await tx.query('select 1');
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

describe('autocommitAsPrincipal: a transaction of one statement', () => {
  it('runs the statement as the principal and commits it', async () => {
    const pool = testPool();
    try {
      const owner = org.userWithRole('owner');
      const { rows } = await autocommitAsPrincipal<{ uid: string; role: string; name: string }>(
        pool,
        { kind: 'user', userId: owner },
        `select auth.uid() as uid, current_user as role, (select name from public.agents where id = $1) as name`,
        [agentId],
      );
      expect(rows).toEqual([{ uid: owner, role: 'authenticated', name: 'Original' }]);
      await autocommitAsPrincipal(pool, { kind: 'user', userId: owner }, `update public.agents set name = $2 where id = $1`, [agentId, 'Committed']);
      expect((await admin.query('select name from public.agents where id = $1', [agentId])).rows[0]?.name).toBe('Committed');
      await admin.query(`update public.agents set name = 'Original' where id = $1`, [agentId]);
    } finally {
      await pool.end();
    }
  });

  it('throws the statement error, writes nothing, and leaves the connection clean', async () => {
    const pool = testPool();
    try {
      const owner = { kind: 'user', userId: org.userWithRole('owner') } as const;
      await expect(
        autocommitAsPrincipal(pool, owner, `update public.agents set name = 'Changed' where id = $1 and 1 / (select 0) = 1`, [agentId]),
      ).rejects.toMatchObject({ code: '22012' });
      await expect(autocommitAsPrincipal(pool, { kind: 'anon' }, 'select count(*) from public.agents')).rejects.toMatchObject({ code: '42501' });
      const { rows } = await admin.query('select name from public.agents where id = $1', [agentId]);
      expect(rows[0]?.name).toBe('Original');
      // Same connection (max 1): no transaction left open, back to authenticator without claims.
      const after = await pool.query(`select current_user as role, current_setting('request.jwt.claims', true) as claims, now() = statement_timestamp() as fresh`);
      expect(after.rows[0]).toEqual({ role: 'authenticator', claims: '', fresh: true });
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

describe('prepared statements on pooled connections (DATABASE_PREPARED_STATEMENTS on)', () => {
  it('prepares each parameterized statement once per connection and reuses it', async () => {
    const pool = testPool({ preparedStatements: true });
    try {
      const owner = { kind: 'user', userId: org.userWithRole('owner') } as const;
      const lookup = `select name from public.agents where id = $1`;
      const names: string[] = [];
      for (let i = 0; i < 3; i++) {
        names.push(await withPrincipal(pool, owner, (tx) => tx.query<{ name: string }>(lookup, [agentId]).then((r) => r.rows[0]!.name)));
      }
      expect(names).toEqual(['Original', 'Original', 'Original']);
      // The statement is prepared on the connection once; queries without parameters are not.
      const { rows } = await pool.query<{ statement: string; calls: string }>(
        `select statement, generic_plans + custom_plans as calls from pg_prepared_statements where from_sql = false`,
      );
      expect(rows.map((r) => r.statement)).toEqual([lookup]);
      expect(Number(rows[0]!.calls)).toBe(3);
    } finally {
      await pool.end();
    }
  });

  it('stops preparing new statements on a connection at the cap, and still runs them', async () => {
    const pool = testPool({ preparedStatements: true });
    try {
      const owner = { kind: 'user', userId: org.userWithRole('owner') } as const;
      const extra = 3;
      const results = await withPrincipal(pool, owner, async (tx) => {
        const out: number[] = [];
        // Distinct texts (a varying shape of SQL): each is a new statement.
        for (let i = 0; i < MAX_PREPARED_STATEMENTS_PER_CONNECTION + extra; i++) {
          out.push((await tx.query<{ n: number }>(`select $1::int + ${i} as n`, [1])).rows[0]!.n);
        }
        return out;
      });
      expect(results.at(-1)).toBe(MAX_PREPARED_STATEMENTS_PER_CONNECTION + extra);
      const { rows } = await pool.query<{ n: number }>(`select count(*)::int as n from pg_prepared_statements where from_sql = false`);
      expect(rows[0]!.n).toBe(MAX_PREPARED_STATEMENTS_PER_CONNECTION);
    } finally {
      await pool.end();
    }
  });

  it('drops a connection whose prepared statement went stale under a migration, so the next transaction works', async () => {
    const table = `private.prepared_probe_${randomUUID().replaceAll('-', '')}`;
    const pool = createPool(adminDatabaseUrl(), { ...testPoolMode(), max: 1, preparedStatements: true });
    try {
      await admin.query(`create table ${table} (id int primary key)`);
      await admin.query(`grant select on ${table} to service_role`);
      await admin.query(`insert into ${table} values (1)`);
      const read = () => withServiceRole(pool, (tx) => tx.query(`select * from ${table} where id = $1`, [1]).then((r) => r.rows[0]));
      expect(await read()).toEqual({ id: 1 });
      const pidBefore = (await pool.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      await admin.query(`alter table ${table} add column note text default 'added'`);
      // The statement prepared before the change cannot return the new shape: it fails once…
      await expect(read()).rejects.toMatchObject({ code: '0A000' });
      // …and the connection holding it is gone, so the retry prepares it afresh elsewhere.
      expect(await read()).toEqual({ id: 1, note: 'added' });
      const pidAfter = (await pool.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      expect(pidAfter).not.toBe(pidBefore);
    } finally {
      await pool.end();
      await admin.query(`drop table if exists ${table}`);
    }
  });
});

describe('idle pooled connections (DATABASE_POOL_IDLE_SECONDS)', () => {
  const backendPid = (pool: ReturnType<typeof testPool>) => pool.query<{ pid: number }>('select pg_backend_pid() as pid').then((r) => r.rows[0]!.pid);

  it('keeps an idle connection (and what it has cached) for the configured time, then closes it', async () => {
    const keeps = testPool({ idleSeconds: 10 });
    const closes = testPool({ idleSeconds: 1 });
    try {
      const [kept, closed] = [await backendPid(keeps), await backendPid(closes)];
      await new Promise((r) => setTimeout(r, 1_800));
      // The same server process answers again: nothing was reconnected.
      expect(await backendPid(keeps)).toBe(kept);
      expect(closes.totalCount).toBe(0);
      expect(await backendPid(closes)).not.toBe(closed);
    } finally {
      await Promise.all([keeps.end(), closes.end()]);
    }
  });

  it('defaults to 300 s, not node-postgres\u2019 10 s', () => {
    const pool = createPool(appDatabaseUrl());
    try {
      expect(pool.options.idleTimeoutMillis).toBe(300_000);
    } finally {
      void pool.end();
    }
  });
});
