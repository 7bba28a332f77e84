import { randomUUID } from 'node:crypto';
import { copyFile, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MigrationFailedError, MigrationLayoutError, MigrationLockTimeoutError, migrate } from '../../lib/migrate.js';
import { adminDatabaseUrl, adminPool } from '../support/db.js';

const repoMigrations = fileURLToPath(new URL('../../supabase/migrations/', import.meta.url));
const admin = adminPool({ max: 2 });
const tempDirs: string[] = [];

async function migrationsDir(files: Record<string, string>, withRepoMigrations = false): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'migrations-'));
  tempDirs.push(dir);
  if (withRepoMigrations) {
    for (const file of await readdir(repoMigrations)) await copyFile(join(repoMigrations, file), join(dir, file));
  }
  for (const [name, sql] of Object.entries(files)) await writeFile(join(dir, name), sql);
  return dir;
}

async function ledgerVersions(pool: pg.Pool | pg.Client): Promise<string[]> {
  const { rows } = await pool.query<{ version: string }>('select version from supabase_migrations.schema_migrations order by version');
  return rows.map((row) => row.version);
}

afterAll(async () => {
  await admin.end();
  await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

describe('migrate on the test database', () => {
  it('applies nothing when run again', async () => {
    const before = await ledgerVersions(admin);
    expect(before.length).toBeGreaterThan(0);
    await expect(migrate(adminDatabaseUrl())).resolves.toEqual({ applied: [] });
    expect(await ledgerVersions(admin)).toEqual(before);
  });

  it('rejects a file name without a 14-digit version and applies nothing', async () => {
    const dir = await migrationsDir({ '2026_add_things.sql': 'create table public.should_not_exist (id int);' }, true);
    await expect(migrate(adminDatabaseUrl(), { migrationsDir: dir })).rejects.toBeInstanceOf(MigrationLayoutError);
    const { rows } = await admin.query(`select to_regclass('public.should_not_exist') as table`);
    expect(rows[0]?.table).toBeNull();
  });

  it('rejects two files with the same version', async () => {
    const dir = await migrationsDir({ '29990101000000_one.sql': 'select 1;', '29990101000000_two.sql': 'select 1;' });
    await expect(migrate(adminDatabaseUrl(), { migrationsDir: dir })).rejects.toThrow(/share version 29990101000000/);
  });
});

// Creating and failing migrations would disturb the shared test database, so these run on
// a database of their own on the same server.
describe('migrate on a fresh database', () => {
  const databaseName = `migrate_test_${randomUUID().replaceAll('-', '')}`;
  const url = new URL(adminDatabaseUrl());
  url.pathname = `/${databaseName}`;
  const freshUrl = url.toString();
  let fresh: pg.Client;

  beforeAll(async () => {
    await admin.query(`create database ${pg.escapeIdentifier(databaseName)}`);
    fresh = new pg.Client({ connectionString: freshUrl });
    await fresh.connect();
  });

  afterAll(async () => {
    await fresh?.end();
    await admin.query(`drop database if exists ${pg.escapeIdentifier(databaseName)} with (force)`);
  });

  it('applies every migration exactly once in version order when two processes migrate at the same time', async () => {
    const dir = await migrationsDir(
      {
        // Written out of order on purpose: the later version depends on the earlier one.
        '29990101000002_add_probe_column.sql': 'alter table public.migrate_probe add column note text;',
        '29990101000001_create_probe.sql': 'create table public.migrate_probe (id int primary key);',
      },
      true,
    );
    const [first, second] = await Promise.all([migrate(freshUrl, { migrationsDir: dir }), migrate(freshUrl, { migrationsDir: dir })]);
    const all = [...(await readdir(dir))].map((file) => file.slice(0, 14)).sort();
    expect([...first.applied, ...second.applied].sort()).toEqual(all);
    expect([first.applied.length, second.applied.length].sort()).toEqual([0, all.length]);
    expect(await ledgerVersions(fresh)).toEqual(all);

    const { rows } = await fresh.query(
      `select name, array_length(statements, 1) as statements, applied_at is not null as dated
       from supabase_migrations.schema_migrations where version = '29990101000002'`,
    );
    expect(rows[0]).toEqual({ name: 'add_probe_column', statements: 1, dated: true });
    await expect(migrate(freshUrl, { migrationsDir: dir })).resolves.toEqual({ applied: [] });
  });

  it('rolls back a failing migration completely, records nothing, and stops there', async () => {
    const dir = await migrationsDir(
      {
        '29990101000003_half_done.sql': 'create table public.half_done (id int); select 1/0;',
        '29990101000004_after.sql': 'create table public.after_failure (id int);',
      },
      true,
    );
    const before = await ledgerVersions(fresh);
    const failure = await migrate(freshUrl, { migrationsDir: dir }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(MigrationFailedError);
    expect((failure as MigrationFailedError).migration.version).toBe('29990101000003');
    const { rows } = await fresh.query(
      `select to_regclass('public.half_done') as half_done, to_regclass('public.after_failure') as after_failure`,
    );
    expect(rows[0]).toEqual({ half_done: null, after_failure: null });
    expect(await ledgerVersions(fresh)).toEqual(before);
  });
  describe('behind a transaction that holds a lock on the table it alters', () => {
    let holder: pg.Client;
    let reader: pg.Client;

    beforeAll(async () => {
      await fresh.query('create table if not exists public.lock_probe (id int primary key)');
      holder = new pg.Client({ connectionString: freshUrl, application_name: 'long-transaction' });
      reader = new pg.Client({ connectionString: freshUrl, application_name: 'reader', statement_timeout: 3_000 });
      await Promise.all([holder.connect(), reader.connect()]);
    });

    afterAll(async () => {
      await holder?.query('rollback').catch(() => {});
      await Promise.all([holder?.end(), reader?.end()]);
    });

    /** A long transaction that has read the table: `alter table` needs it to end first. */
    const holdLock = async () => {
      await holder.query('begin');
      await holder.query('select count(*) from public.lock_probe');
    };

    it('gives up on the lock after lock_timeout, so queries queue behind it only that long, retries with backoff, and applies once the lock is released', async () => {
      const dir = await migrationsDir({ '29990101000010_lock_probe_note.sql': 'alter table public.lock_probe add column note text;' }, true);
      await holdLock();
      const logs: string[] = [];
      const applying = migrate(freshUrl, { migrationsDir: dir, lockTimeoutMs: 300, lockRetries: 20, lockRetryDelayMs: 100, log: (m) => logs.push(m) });

      // Once the migration waits for its lock, a plain read queues behind it. Without lock_timeout
      // the read would wait until the long transaction ends (here: its own 3 s statement_timeout
      // first); with it, at most about one lock_timeout.
      const waitDeadline = Date.now() + 10_000;
      while ((await fresh.query(`select 1 from pg_stat_activity where application_name = 'migrate' and wait_event_type = 'Lock'`)).rowCount === 0) {
        if (Date.now() > waitDeadline) throw new Error('the migration never waited for the lock');
        await new Promise((r) => setTimeout(r, 20));
      }
      const started = Date.now();
      await expect(reader.query('select count(*) from public.lock_probe')).resolves.toBeDefined();
      expect(Date.now() - started).toBeLessThan(2_000);

      const deadline = Date.now() + 15_000;
      while (logs.filter((m) => m.includes('waited 300 ms for a lock')).length < 2) {
        if (Date.now() > deadline) throw new Error(`no retries logged: ${logs.join(' | ')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(await ledgerVersions(fresh)).not.toContain('29990101000010');
      await holder.query('commit');

      await expect(applying).resolves.toEqual({ applied: ['29990101000010'] });
      const retries = logs.filter((m) => m.startsWith('migration 29990101000010_lock_probe_note waited 300 ms for a lock held by another transaction and was rolled back; try '));
      expect(retries.length).toBeGreaterThanOrEqual(2);
      expect(retries[0]).toMatch(/try 2 of 21 in 100 ms$/);
      expect(retries[1]).toMatch(/try 3 of 21 in 200 ms$/);
      expect(logs.at(-1)).toBe('applied 29990101000010_lock_probe_note');
      const { rows } = await fresh.query(`select 1 from information_schema.columns where table_name = 'lock_probe' and column_name = 'note'`);
      expect(rows).toHaveLength(1);
      expect(await ledgerVersions(fresh)).toContain('29990101000010');
    });

    it('fails with a clear error naming the migration and the lock, and records nothing, when the lock is never released', async () => {
      const dir = await migrationsDir({ '29990101000011_lock_probe_flag.sql': 'alter table public.lock_probe add column flag boolean;' }, true);
      await holdLock();
      const logs: string[] = [];
      const failure = await migrate(freshUrl, { migrationsDir: dir, lockTimeoutMs: 100, lockRetries: 2, lockRetryDelayMs: 50, log: (m) => logs.push(m) }).catch((e: unknown) => e);
      await holder.query('rollback');

      expect(failure).toBeInstanceOf(MigrationLockTimeoutError);
      expect(failure).toBeInstanceOf(MigrationFailedError);
      const error = failure as MigrationLockTimeoutError;
      expect(error.migration.version).toBe('29990101000011');
      expect(error.tries).toBe(3);
      expect(error.message).toMatch(/^migration 29990101000011_lock_probe_flag was not applied: it waited 100 ms for a lock 3 time\(s\) and another transaction held it each time/);
      expect((error.cause as { code?: string }).code).toBe('55P03');
      expect(logs.filter((m) => m.includes('waited 100 ms for a lock'))).toHaveLength(2);
      expect(await ledgerVersions(fresh)).not.toContain('29990101000011');
      const { rows } = await fresh.query(`select 1 from information_schema.columns where table_name = 'lock_probe' and column_name = 'flag'`);
      expect(rows).toHaveLength(0);
    });
  });
});
