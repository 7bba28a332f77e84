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
    // A query is written as soon as it is issued, not after the previous one's answer: a
    // transaction's BEGIN goes out together with its first statement (see inTransaction).
    pipeline: true,
  });
  pool.on('error', opts.onIdleClientError ?? (() => {}));
  pool.on('connect', prepareAndPipeline);
  return pool;
}

/** Set by inTransaction on a checked-out connection: the BEGIN to send with its first statement. */
const pendingBegin = Symbol('pendingBegin');
interface PendingBegin {
  text: string;
  /** The BEGIN's own answer, once it has been sent. */
  sent?: Promise<unknown>;
}
type PooledClient = pg.PoolClient & { [pendingBegin]?: PendingBegin | undefined };

/** Distinct statements one connection keeps prepared; later new ones run unnamed (SQL built from a varying shape must not grow it forever). */
export const MAX_PREPARED_STATEMENTS_PER_CONNECTION = 500;

/**
 * How a pooled connection sends queries:
 * - Every parameterized query runs as a named prepared statement, keyed by its text: Postgres
 *   parses it, applies the RLS policies and plans it once per connection instead of on every
 *   call (in `npm run bench`, Postgres CPU per agent run went from 18–19 to 13.6–16 ms). RLS is
 *   unaffected: the policies read the transaction's claims when the statement runs, and a plan
 *   is only reused for the role it was planned for. Statements without parameters (BEGIN with
 *   the settings, COMMIT, LISTEN) stay simple queries.
 * - A BEGIN that inTransaction left pending goes out in the same write as the next query.
 */
function prepareAndPipeline(client: PooledClient): void {
  const names = new Map<string, string>();
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  const run = (config: unknown, values?: unknown, callback?: unknown) => {
    if (typeof config === 'string' && Array.isArray(values) && values.length > 0) {
      let name = names.get(config);
      if (name === undefined && names.size < MAX_PREPARED_STATEMENTS_PER_CONNECTION) {
        name = `s${names.size}`;
        names.set(config, name);
      }
      if (name !== undefined) return query({ name, text: config, values }, callback);
    }
    return query(config, values, callback);
  };
  (client as { query: (...args: unknown[]) => unknown }).query = (config: unknown, values?: unknown, callback?: unknown) => {
    const begin = client[pendingBegin];
    if (begin === undefined) return run(config, values, callback);
    client[pendingBegin] = undefined;
    // The connection is in pipeline mode, so both are written at once; corked, they leave in one
    // write (a syscall and, on a loaded host, a context switch each).
    const stream = client.connection.stream;
    stream.cork();
    try {
      // Through client.query (pendingBegin is cleared), so whoever observes this connection's queries sees the BEGIN too.
      begin.sent = client.query(begin.text);
      // Awaited by inTransaction; until then this keeps a failed BEGIN from counting as unhandled.
      begin.sent.catch(() => undefined);
      return run(config, values, callback);
    } finally {
      stream.uncork();
    }
  };
}

/**
 * A prepared statement whose result columns changed (a migration altered a table under a running
 * process) fails on every later use on that connection; the connection is dropped instead.
 */
function isStalePreparedStatement(error: unknown): boolean {
  return (error as { code?: unknown }).code === '0A000' && /cached plan must not change result type/.test((error as Error).message ?? '');
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

/**
 * BEGIN and the transaction-local settings (is_local = true), as one simple query. A simple
 * query cannot take parameters, so the values are escaped literals (escapeLiteral quotes and
 * escapes them; the claims are built server-side). The role and claims end with the
 * transaction, so the next user of this pooled connection starts as authenticator with no
 * claims. Operator tooling (service_role) keeps the connection's own statement_timeout.
 */
function beginWithSettings(client: pg.PoolClient, role: DatabaseRole | 'service_role', claims: Record<string, unknown>, options: TransactionOptions): string {
  const settings = [`set_config('role', ${client.escapeLiteral(role)}, true)`, `set_config('request.jwt.claims', ${client.escapeLiteral(JSON.stringify(claims))}, true)`];
  if (role !== 'service_role') settings.push(`set_config('statement_timeout', ${client.escapeLiteral(statementTimeoutFor[role])}, true)`);
  if (options.skipWalFlushOnCommit) settings.push(`set_config('synchronous_commit', 'off', true)`);
  return `begin; select ${settings.join(', ')}`;
}

/**
 * A pooled connection for `fn`, returned to the pool afterwards, or destroyed when it broke:
 * the connection reported an error, `fn` called `drop`, or a prepared statement on it went stale.
 */
async function withConnection<T>(pool: pg.Pool, fn: (client: PooledClient, drop: (error: Error) => void) => Promise<T>): Promise<T> {
  const client: PooledClient = await pool.connect();
  let brokenConnection: Error | undefined;
  const drop = (error: Error) => {
    brokenConnection = error;
  };
  // A connection that dies while checked out (server restart, terminated backend) emits
  // 'error' outside any query; pg-pool only listens while the client is idle, and an
  // unheard 'error' event would crash the process.
  client.on('error', drop);
  try {
    return await fn(client, drop);
  } catch (error) {
    if (isStalePreparedStatement(error)) drop(error as Error);
    throw error;
  } finally {
    client[pendingBegin] = undefined;
    client.removeListener('error', drop);
    // Releasing with an error destroys the connection instead of returning it to the pool.
    client.release(brokenConnection);
  }
}

function inTransaction<T>(
  pool: pg.Pool,
  role: DatabaseRole | 'service_role',
  claims: Record<string, unknown>,
  fn: (tx: Tx) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  return withConnection(pool, async (client, drop) => {
    // The BEGIN goes out in the same write as the transaction's first statement, which the
    // server runs right after it: every request and activity opens transactions, and each round
    // trip and each write costs.
    const begin: PendingBegin = { text: beginWithSettings(client, role, claims, options) };
    client[pendingBegin] = begin;
    try {
      const result = await fn(client);
      // No statement ran, so no transaction was opened.
      if (begin.sent === undefined) return result;
      await begin.sent;
      const commit = await client.query('commit');
      // COMMIT of an aborted transaction answers ROLLBACK without an error.
      if (commit.command === 'ROLLBACK') throw new TransactionRolledBackError();
      return result;
    } catch (error) {
      if (begin.sent === undefined) throw error;
      // When the settings failed, the statements after them only report an aborted transaction.
      const beginError = await begin.sent.then(() => undefined, (e: unknown) => e);
      try {
        await client.query('rollback');
      } catch (rollbackError) {
        drop(rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError)));
      }
      throw beginError ?? error;
    }
  });
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

/** What runs statements: a transaction's connection, or `asPrincipal`. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/**
 * One statement as `principal`, in a transaction of its own that costs one round trip and one
 * write: BEGIN with the settings, the statement and COMMIT leave together (the connection is in
 * pipeline mode) and the server runs them in order. For the many transactions of one statement
 * (an activity loading its inputs or recording its result); `withPrincipal` for everything
 * else. An error of any of the three is thrown; whichever failed, the COMMIT has ended the
 * transaction (as a ROLLBACK when something before it failed).
 */
export async function queryAsPrincipal<R extends pg.QueryResultRow = pg.QueryResultRow>(
  pool: pg.Pool,
  principal: Principal,
  text: string,
  values: unknown[] = [],
  options: TransactionOptions = {},
): Promise<pg.QueryResult<R>> {
  const { role, claims } = databaseSettingsFor(principal);
  return withConnection(pool, async (client) => {
    const stream = client.connection.stream;
    stream.cork();
    let sent: [Promise<unknown>, Promise<pg.QueryResult<R>>, Promise<pg.QueryResult>];
    try {
      sent = [client.query(beginWithSettings(client, role, claims, options)), client.query<R>(text, values), client.query('commit')];
    } finally {
      stream.uncork();
    }
    const [begin, statement, commit] = await Promise.allSettled(sent);
    // The settings' failure first: the statement behind them only reports an aborted transaction.
    for (const outcome of [begin, statement, commit]) if (outcome.status === 'rejected') throw outcome.reason;
    if ((commit as PromiseFulfilledResult<pg.QueryResult>).value.command === 'ROLLBACK') throw new TransactionRolledBackError();
    return (statement as PromiseFulfilledResult<pg.QueryResult<R>>).value;
  });
}

/** A Queryable whose every query is a transaction of its own as `principal` (see queryAsPrincipal). */
export function asPrincipal(pool: pg.Pool, principal: Principal, options: TransactionOptions = {}): Queryable {
  return { query: (text, values) => queryAsPrincipal(pool, principal, text, values, options) };
}

/** Operator tooling, seeds and migrations only: never on a request path. */
export async function withServiceRole<T>(pool: pg.Pool, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return inTransaction(pool, 'service_role', { role: 'service_role' }, fn);
}
