import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { MIGRATION_LOCK_DEFAULTS } from './config.js';

/**
 * Applies supabase/migrations to a database the way the Supabase CLI does (same file layout,
 * same ledger in supabase_migrations.schema_migrations), so one set of migrations serves a
 * Supabase project and plain Postgres alike. Plain Postgres first gets the bootstrap that
 * recreates what Supabase provides (roles, schema auth).
 */

const defaultMigrationsDir = fileURLToPath(new URL('../supabase/migrations/', import.meta.url));
const bootstrapPath = fileURLToPath(new URL('../supabase/bootstrap/plain-postgres.sql', import.meta.url));

// Supabase CLI layout: <version>_<name>.sql with a 14-digit UTC timestamp as the version.
const migrationFileName = /^(?<version>\d{14})_(?<name>[A-Za-z0-9][A-Za-z0-9_-]*)\.sql$/;

// Arbitrary constant shared by every migrating process; advisory locks are per database.
const migrationLockKey = 7_240_117_090_000n;

export type MigrateOptions = {
  log?: (message: string) => void;
  migrationsDir?: string;
  /** lock_timeout of each migration's transaction (default 5 s; MIGRATION_LOCK_TIMEOUT_MS). */
  lockTimeoutMs?: number;
  /** Tries after the first when a migration gives up waiting for a lock (default 5; MIGRATION_LOCK_RETRIES). */
  lockRetries?: number;
  /** The wait before the first of those tries, doubled for each next one, at most 30 s (default 1 s). */
  lockRetryDelayMs?: number;
};

const defaultLockRetryDelayMs = 1_000;
const maxLockRetryDelayMs = 30_000;
// SQLSTATE lock_not_available: lock_timeout expired, or a NOWAIT lock was refused.
const lockNotAvailable = '55P03';

export type MigrationFile = { version: string; name: string; path: string };

export class MigrationLayoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MigrationLayoutError';
  }
}

export class MigrationFailedError extends Error {
  constructor(
    readonly migration: MigrationFile,
    options: { cause: unknown },
  ) {
    const reason = options.cause instanceof Error ? options.cause.message : String(options.cause);
    super(`migration ${migration.version}_${migration.name} failed and was rolled back: ${reason}`, options);
    this.name = 'MigrationFailedError';
  }
}

/** A migration that never got its locks: another transaction held them through every try. */
export class MigrationLockTimeoutError extends MigrationFailedError {
  constructor(
    migration: MigrationFile,
    readonly tries: number,
    lockTimeoutMs: number,
    options: { cause: unknown },
  ) {
    super(migration, options);
    this.name = 'MigrationLockTimeoutError';
    this.message =
      `migration ${migration.version}_${migration.name} was not applied: it waited ${lockTimeoutMs} ms for a lock ${tries} time(s) ` +
      `and another transaction held it each time (rolled back, nothing recorded). Find the holder with ` +
      `"select pid, state, xact_start, query from pg_stat_activity where pid = any(pg_blocking_pids(<pid of the waiting migration>))" ` +
      `or end the long transaction, then run the migration again.`;
  }
}

const isLockNotAvailable = (error: unknown) => (error as { code?: unknown } | null)?.code === lockNotAvailable;

/** The migrations in `dir`, in version order. Any other file there is an error, not a silent skip. */
export async function listMigrations(dir: string = defaultMigrationsDir): Promise<MigrationFile[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const migrations: MigrationFile[] = [];
  const seen = new Map<string, string>();
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const match = entry.isFile() ? migrationFileName.exec(entry.name) : null;
    if (!match) {
      throw new MigrationLayoutError(
        `${join(dir, entry.name)} is not a migration: expected <14-digit version>_<name>.sql, e.g. 20261126090000_core_tenancy.sql`,
      );
    }
    const { version, name } = match.groups as { version: string; name: string };
    const previous = seen.get(version);
    if (previous) {
      throw new MigrationLayoutError(`${entry.name} and ${previous} share version ${version}`);
    }
    seen.set(version, entry.name);
    migrations.push({ version, name, path: join(dir, entry.name) });
  }
  return migrations.sort((a, b) => a.version.localeCompare(b.version));
}

export async function migrate(adminUrl: string, opts: MigrateOptions = {}): Promise<{ applied: string[] }> {
  const log = opts.log ?? (() => {});
  // Validate the whole directory before touching the database: a bad file name applies nothing.
  const migrations = await listMigrations(opts.migrationsDir ?? defaultMigrationsDir);
  const bootstrap = await readFile(bootstrapPath, 'utf8');
  const lockTimeoutMs = opts.lockTimeoutMs ?? MIGRATION_LOCK_DEFAULTS.lockTimeoutMs;
  const lockRetries = opts.lockRetries ?? MIGRATION_LOCK_DEFAULTS.lockRetries;
  const lockRetryDelayMs = opts.lockRetryDelayMs ?? defaultLockRetryDelayMs;

  const client = new pg.Client({ connectionString: adminUrl, application_name: 'migrate' });
  await client.connect();
  try {
    // Session-level lock held for the whole run, so a second process waits and then finds
    // everything applied instead of racing on the same versions.
    await client.query('select pg_advisory_lock($1)', [migrationLockKey.toString()]);
    try {
      await inTransaction(client, bootstrap);
      log('bootstrap checked (roles, schema auth, migration ledger)');

      const { rows } = await client.query<{ version: string }>(
        'select version from supabase_migrations.schema_migrations',
      );
      const recorded = new Set(rows.map((row) => row.version));
      const applied: string[] = [];
      for (const migration of migrations) {
        if (recorded.has(migration.version)) continue;
        const sql = await readFile(migration.path, 'utf8');
        for (let attempt = 1; ; attempt++) {
          try {
            await inTransaction(
              client,
              sql,
              async () => {
                // The whole file as one statement: splitting SQL correctly (dollar quotes, comments)
                // is the server's job, and the CLI accepts any array here.
                await client.query(
                  'insert into supabase_migrations.schema_migrations (version, name, statements) values ($1, $2, $3)',
                  [migration.version, migration.name, [sql]],
                );
              },
              lockTimeoutMs,
            );
            break;
          } catch (error) {
            if (!isLockNotAvailable(error)) throw new MigrationFailedError(migration, { cause: error });
            if (attempt > lockRetries) throw new MigrationLockTimeoutError(migration, attempt, lockTimeoutMs, { cause: error });
            // The transaction was rolled back, so the queries queued behind it ran; try again once
            // the other transaction has had time to finish.
            const delayMs = Math.min(lockRetryDelayMs * 2 ** (attempt - 1), maxLockRetryDelayMs);
            log(
              `migration ${migration.version}_${migration.name} waited ${lockTimeoutMs} ms for a lock held by another transaction ` +
                `and was rolled back; try ${attempt + 1} of ${lockRetries + 1} in ${delayMs} ms`,
            );
            await new Promise((resolve) => setTimeout(resolve, delayMs));
          }
        }
        applied.push(migration.version);
        log(`applied ${migration.version}_${migration.name}`);
      }
      if (applied.length === 0) log('database is up to date');
      return { applied };
    } finally {
      await client.query('select pg_advisory_unlock($1)', [migrationLockKey.toString()]).catch(() => {});
    }
  } finally {
    await client.end();
  }
}

async function inTransaction(client: pg.Client, sql: string, alsoRun?: () => Promise<void>, lockTimeoutMs?: number): Promise<void> {
  await client.query('begin');
  try {
    // Transaction-local (is_local = true): gone at commit or rollback, and a migration's own
    // `set local lock_timeout` still overrides it.
    if (lockTimeoutMs !== undefined) await client.query(`select set_config('lock_timeout', $1, true)`, [`${lockTimeoutMs}ms`]);
    // No parameters: the simple query protocol, which accepts a file of many statements.
    await client.query(sql);
    await alsoRun?.();
    await client.query('commit');
  } catch (error) {
    await client.query('rollback').catch(() => {});
    throw error;
  }
}
