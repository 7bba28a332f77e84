import pg from 'pg';
import { databaseSettingsFor, type DatabaseRole, type Principal } from './principal.js';

export type Tx = pg.PoolClient;

export type PoolOptions = {
  max?: number;
  applicationName?: string;
  /** Errors of idle pooled connections (e.g. the server restarted). pg already discards the
   * connection; without a listener the 'error' event would crash the process. */
  onIdleClientError?: (error: Error) => void;
};

export function createPool(connectionString: string, opts: PoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max: opts.max ?? 10,
    ...(opts.applicationName ? { application_name: opts.applicationName } : {}),
  });
  pool.on('error', opts.onIdleClientError ?? (() => {}));
  return pool;
}

/**
 * Supabase's per-role statement timeouts (anon 3s, authenticated 8s). Role settings only load
 * at login, not on a role switch, so the transaction applies them itself.
 */
const statementTimeoutFor: Record<DatabaseRole, string> = {
  anon: '3s',
  authenticated: '8s',
};

export class TransactionRolledBackError extends Error {
  constructor() {
    super('COMMIT rolled the transaction back: a statement inside it failed and its error was caught');
    this.name = 'TransactionRolledBackError';
  }
}

async function inTransaction<T>(
  pool: pg.Pool,
  role: DatabaseRole | 'service_role',
  claims: Record<string, unknown>,
  fn: (tx: Tx) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  const client = await pool.connect();
  let brokenConnection: Error | undefined;
  // A connection that dies while checked out (server restart, terminated backend) emits
  // 'error' outside any query; pg-pool only listens while the client is idle, and an
  // unheard 'error' event would crash the process.
  const onConnectionError = (error: Error) => {
    brokenConnection = error;
  };
  client.on('error', onConnectionError);
  try {
    // BEGIN and the transaction-local settings (is_local = true) go in one round trip: every
    // request and activity opens transactions, and on a loaded host each round trip costs a
    // context switch. A simple query cannot take parameters, so the values are escaped literals
    // (escapeLiteral quotes and escapes them; the claims are built server-side). The role and
    // claims end with the transaction, so the next user of this pooled connection starts as
    // authenticator with no claims. Operator tooling (service_role) keeps the connection's own
    // statement_timeout.
    const settings = [`set_config('role', ${client.escapeLiteral(role)}, true)`, `set_config('request.jwt.claims', ${client.escapeLiteral(JSON.stringify(claims))}, true)`];
    if (role !== 'service_role') settings.push(`set_config('statement_timeout', ${client.escapeLiteral(statementTimeoutFor[role])}, true)`);
    if (options.skipWalFlushOnCommit) settings.push(`set_config('synchronous_commit', 'off', true)`);
    await client.query(`begin; select ${settings.join(', ')}`);
    const result = await fn(client);
    const commit = await client.query('commit');
    // COMMIT of an aborted transaction answers ROLLBACK without an error.
    if (commit.command === 'ROLLBACK') throw new TransactionRolledBackError();
    return result;
  } catch (error) {
    try {
      await client.query('rollback');
    } catch (rollbackError) {
      brokenConnection = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
    }
    throw error;
  } finally {
    client.removeListener('error', onConnectionError);
    // Releasing with an error destroys the connection instead of returning it to the pool.
    client.release(brokenConnection);
  }
}

/** The one way request handlers and activities touch tenant data: one transaction whose first statement sets the role and claims transaction-locally. */
export interface TransactionOptions {
  /**
   * COMMIT without waiting for the WAL flush (synchronous_commit off, this transaction only). For
   * state whose loss in a database crash is harmless, written often enough that the flush matters
   * (the CRM rate buckets). Never for tenant data or anything a retry relies on.
   */
  skipWalFlushOnCommit?: boolean;
}

export async function withPrincipal<T>(pool: pg.Pool, principal: Principal, fn: (tx: Tx) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
  const { role, claims } = databaseSettingsFor(principal);
  return inTransaction(pool, role, claims, fn, options);
}

/** Operator tooling, seeds and migrations only: never on a request path. */
export async function withServiceRole<T>(pool: pg.Pool, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return inTransaction(pool, 'service_role', { role: 'service_role' }, fn);
}
