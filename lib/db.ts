import pg from 'pg';
import { databaseSettingsFor, type DatabaseRole, type Principal } from './principal.js';

/** What runs statements: a transaction (Tx), or a runner whose statements each commit alone. */
export interface Queryable {
  // Rows default to `any` as in node-postgres' own query(): callers name a row type when they read one.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  query<R extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/** The statements of one org-scoped transaction (see withPrincipal); they commit together or not at all. */
export interface Tx extends Queryable {
  /** Tells a transaction apart from an autocommitting Queryable at compile time. */
  readonly atomic: true;
}

export type PoolOptions = {
  max?: number;
  applicationName?: string;
  /** Errors of idle pooled connections (e.g. the server restarted). pg already discards the
   * connection; without a listener the 'error' event would crash the process. */
  onIdleClientError?: (error: Error) => void;
  /**
   * node-postgres' `pipeline` mode (DATABASE_PIPELINE, default on): a query is written as soon
   * as it is issued, not after the previous one's answer, so a transaction's BEGIN travels with
   * its first statement and a one-statement transaction costs one round trip instead of three.
   * The option is young in node-postgres; turned off, every query waits for the previous answer
   * and everything else behaves the same (tests/db, tests/workflows run in both modes).
   */
  pipeline?: boolean;
  /**
   * Parameterized statements run as named prepared statements (DATABASE_PREPARED_STATEMENTS,
   * default on), through node-postgres' `{ name, text, values }` query config: Postgres parses,
   * applies the RLS policies to and plans each statement once per connection instead of on every
   * call. RLS is unaffected: the policies read the transaction's claims when the statement runs,
   * and a plan is only reused for the role it was planned for. Turn off behind a pooler in
   * transaction mode that does not track prepared statements.
   */
  preparedStatements?: boolean;
  /**
   * Seconds a connection may sit idle in the pool before it is closed (DATABASE_POOL_IDLE_SECONDS,
   * default 300; node-postgres' own default is 10). A new connection costs far more than its
   * handshake: its first knowledge search reloads the catalog entries, text search dictionaries
   * and function plans the warm one had (about 100 ms more, measured at 100k chunks), and its
   * prepared statements are gone. An agent's tool calls come seconds to minutes apart.
   */
  idleSeconds?: number;
};

interface PoolSettings {
  preparedStatements: boolean;
}
const poolSettings = new WeakMap<pg.Pool, PoolSettings>();

export function createPool(connectionString: string, opts: PoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max: opts.max ?? 10,
    idleTimeoutMillis: (opts.idleSeconds ?? 300) * 1000,
    ...(opts.applicationName ? { application_name: opts.applicationName } : {}),
    pipeline: opts.pipeline ?? true,
  });
  poolSettings.set(pool, { preparedStatements: opts.preparedStatements ?? true });
  pool.on('error', opts.onIdleClientError ?? (() => {}));
  return pool;
}

/** Distinct statements one connection keeps prepared; later new ones run unnamed (SQL built from a varying shape must not grow it forever). */
export const MAX_PREPARED_STATEMENTS_PER_CONNECTION = 500;

/** Per connection: the name each statement text was prepared under. */
const preparedNames = new WeakMap<pg.PoolClient, Map<string, string>>();

/**
 * The query config for `text`: a parameterized statement gets a stable per-connection name, so
 * node-postgres prepares it on first use and afterwards only binds and executes it. Statements
 * without parameters (BEGIN with the settings, COMMIT) stay simple queries.
 */
function queryConfig(pool: pg.Pool, client: pg.PoolClient, text: string, values: unknown[] | undefined): pg.QueryConfig {
  if (!values || values.length === 0) return { text };
  if (!(poolSettings.get(pool)?.preparedStatements ?? true)) return { text, values };
  let names = preparedNames.get(client);
  if (!names) preparedNames.set(client, (names = new Map()));
  let name = names.get(text);
  if (name === undefined && names.size < MAX_PREPARED_STATEMENTS_PER_CONNECTION) {
    name = `s${names.size}`;
    names.set(text, name);
  }
  return name === undefined ? { text, values } : { name, text, values };
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
function beginWithSettings(role: DatabaseRole | 'service_role', claims: Record<string, unknown>, options: TransactionOptions): string {
  const settings = [`set_config('role', ${pg.escapeLiteral(role)}, true)`, `set_config('request.jwt.claims', ${pg.escapeLiteral(JSON.stringify(claims))}, true)`];
  if (role !== 'service_role') settings.push(`set_config('statement_timeout', ${pg.escapeLiteral(statementTimeoutFor[role])}, true)`);
  if (options.skipWalFlushOnCommit) settings.push(`set_config('synchronous_commit', 'off', true)`);
  return `begin; select ${settings.join(', ')}`;
}

/**
 * A pooled connection for `fn`, returned to the pool afterwards, or destroyed when it broke:
 * the connection reported an error, `fn` called `drop`, or a prepared statement on it went stale.
 */
async function withConnection<T>(pool: pg.Pool, fn: (client: pg.PoolClient, drop: (error: Error) => void) => Promise<T>): Promise<T> {
  const client = await pool.connect();
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
    // BEGIN goes out with the transaction's first statement, not before it: in pipeline mode
    // both are written before either answer arrives (one round trip fewer per transaction), and
    // a transaction that runs no statement costs nothing.
    let begun: Promise<unknown> | undefined;
    const tx: Tx = {
      atomic: true,
      query: <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => {
        if (begun === undefined) {
          begun = client.query(beginWithSettings(role, claims, options));
          // Awaited below; until then this keeps a failed BEGIN from counting as unhandled.
          begun.catch(() => undefined);
        }
        return client.query<R>(queryConfig(pool, client, text, values));
      },
    };
    try {
      const result = await fn(tx);
      if (begun === undefined) return result;
      await begun;
      const commit = await client.query('commit');
      // COMMIT of an aborted transaction answers ROLLBACK without an error.
      if (commit.command === 'ROLLBACK') throw new TransactionRolledBackError();
      return result;
    } catch (error) {
      if (begun === undefined) throw error;
      // When the settings failed, the statements after them only report an aborted transaction.
      const beginError = await begun.then(() => undefined, (e: unknown) => e);
      try {
        await client.query('rollback');
      } catch (rollbackError) {
        drop(rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError)));
      }
      throw beginError ?? error;
    }
  });
}

/** Options of one org-scoped transaction. */
export interface TransactionOptions {
  /**
   * COMMIT without waiting for the WAL flush (synchronous_commit off, this transaction only). For
   * state whose loss in a database crash is harmless, written often enough that the flush matters
   * (the CRM rate buckets). Never for tenant data or anything a retry relies on.
   */
  skipWalFlushOnCommit?: boolean;
}

/**
 * The one way to open an org-scoped transaction: request handlers and activities touch tenant
 * data inside `fn`, in one transaction whose first statement sets the role and claims
 * transaction-locally. Never call a network service (Temporal, a CRM, an LLM) inside `fn`: the
 * transaction holds a pooled connection until it ends.
 */
export async function withPrincipal<T>(pool: pg.Pool, principal: Principal, fn: (tx: Tx) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
  const { role, claims } = databaseSettingsFor(principal);
  return inTransaction(pool, role, claims, fn, options);
}

/**
 * One statement as `principal`, committed on its own (autocommit): BEGIN with the settings, the
 * statement and COMMIT are issued together, and in pipeline mode they travel in one round trip.
 * For the many one-statement transactions (an activity loading its inputs or recording its
 * result); `withPrincipal` whenever two statements must commit together. An error of any of the
 * three is thrown; whichever failed, the COMMIT has ended the transaction (as a ROLLBACK when
 * something before it failed).
 */
export async function autocommitAsPrincipal<R extends pg.QueryResultRow = pg.QueryResultRow>(
  pool: pg.Pool,
  principal: Principal,
  text: string,
  values: unknown[] = [],
  options: TransactionOptions = {},
): Promise<pg.QueryResult<R>> {
  const { role, claims } = databaseSettingsFor(principal);
  return withConnection(pool, async (client) => {
    const sent = [client.query(beginWithSettings(role, claims, options)), client.query<R>(queryConfig(pool, client, text, values)), client.query('commit')] as const;
    const [begin, statement, commit] = await Promise.allSettled(sent);
    // The settings' failure first: the statement behind them only reports an aborted transaction.
    for (const outcome of [begin, statement, commit]) if (outcome.status === 'rejected') throw outcome.reason;
    if ((commit as PromiseFulfilledResult<pg.QueryResult>).value.command === 'ROLLBACK') throw new TransactionRolledBackError();
    return (statement as PromiseFulfilledResult<pg.QueryResult<R>>).value;
  });
}

/**
 * A runner whose every statement is a transaction of its own as `principal`
 * (autocommitAsPrincipal), for code that runs single statements through helpers taking a
 * Queryable. It is not a transaction: two statements through it never commit together.
 */
export function autocommitEachAsPrincipal(pool: pg.Pool, principal: Principal, options: TransactionOptions = {}): Queryable {
  return { query: (text, values) => autocommitAsPrincipal(pool, principal, text, values, options) };
}

/** Operator tooling, seeds and migrations only: never on a request path. */
export async function withServiceRole<T>(pool: pg.Pool, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return inTransaction(pool, 'service_role', { role: 'service_role' }, fn);
}
