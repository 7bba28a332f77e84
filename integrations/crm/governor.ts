/**
 * The per-connection request budget, shared by every process that talks to one CRM account:
 * sync activities, agent tool calls and webhook re-reads. A token bucket in Postgres
 * (public.crm_rate_buckets): each request reserves one token, and when the bucket is empty the
 * caller waits for its own reservation to refill. Reservations queue callers in arrival order,
 * so an agent's CRM action waits behind at most the requests already reserved, never behind a
 * whole sync. A 429 blocks the bucket until the provider's Retry-After has passed.
 */
import type pg from 'pg';
import { withPrincipal } from '../../lib/db.js';
import type { CrmProvider } from './types.js';

export interface RateBudget {
  capacity: number;
  refillPerSecond: number;
}

/**
 * Defaults below the documented limits: Kommo allows 7 requests in any second (reference A4),
 * so one token of burst plus 6 per second stays inside a sliding 1 s window; HubSpot OAuth apps
 * get 110 per rolling 10 s (reference B4): 10 of burst plus 10 per second is 110 per 10 s.
 */
export const defaultBudgets: Record<CrmProvider, RateBudget> = {
  kommo: { capacity: 1, refillPerSecond: 6 },
  hubspot: { capacity: 10, refillPerSecond: 10 },
};

export interface ConnectionScope {
  orgId: string;
  connectionId: string;
}

export interface RateGovernorOptions {
  budgets?: Partial<Record<CrmProvider, RateBudget>>;
  sleep?: (ms: number) => Promise<void>;
}

export class RateGovernor {
  private readonly budgets: Record<CrmProvider, RateBudget>;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly pool: pg.Pool,
    options: RateGovernorOptions = {},
  ) {
    this.budgets = { ...defaultBudgets, ...options.budgets };
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** Reserves one request and waits until it may be sent. Answers the time waited (ms). */
  async take(scope: ConnectionScope, provider: CrmProvider, depth = 0): Promise<number> {
    const budget = this.budgets[provider];
    // Every CRM request passes here, so it does not wait for a WAL flush: a bucket state lost in
    // a database crash only hands out at most one more second of budget.
    const { rows } = await withPrincipal(
      this.pool,
      { kind: 'worker', orgId: scope.orgId },
      (tx) =>
        tx.query<{ wait_ms: number }>(
          `insert into public.crm_rate_buckets as b (org_id, connection_id, capacity, refill_per_second, tokens)
           values ($1, $2, $3::float8, $4::float8, $3::float8 - 1)
           on conflict (connection_id) do update set
             tokens = least(b.capacity, b.tokens + extract(epoch from clock_timestamp() - b.refilled_at) * b.refill_per_second) - 1,
             refilled_at = clock_timestamp()
           returning greatest(
             case when b.tokens < 0 then -b.tokens / b.refill_per_second * 1000 else 0 end,
             coalesce(extract(epoch from b.blocked_until - clock_timestamp()) * 1000, 0)
           )::float8 as wait_ms`,
          [scope.orgId, scope.connectionId, budget.capacity, budget.refillPerSecond],
        ),
      { skipWalFlushOnCommit: true },
    );
    const waitMs = Math.max(0, Math.ceil(rows[0]?.wait_ms ?? 0));
    if (waitMs === 0) return 0;
    await this.sleep(waitMs);
    // A 429 may have blocked the bucket while this caller slept on its reservation (made before
    // the block): sending now would hit the provider again. Take a new place in the queue behind
    // the block instead (bounded, so a caller is never parked forever).
    if (depth < 3 && (await this.blockedForMs(scope)) > 0) return waitMs + (await this.take(scope, provider, depth + 1));
    return waitMs;
  }

  private async blockedForMs(scope: ConnectionScope): Promise<number> {
    const { rows } = await withPrincipal(this.pool, { kind: 'worker', orgId: scope.orgId }, (tx) =>
      tx.query<{ ms: number }>(
        `select coalesce(extract(epoch from blocked_until - clock_timestamp()) * 1000, 0)::float8 as ms
           from public.crm_rate_buckets where connection_id = $1`,
        [scope.connectionId],
      ),
    );
    return rows[0]?.ms ?? 0;
  }

  /**
   * The provider pushed back: nobody sends for `retryAfterMs`, and queued reservations start over.
   * The bucket refills from the end of the block (`refilled_at` in the future makes the elapsed
   * time negative), so reservations after a block are spaced at the refill rate behind it
   * instead of all firing the moment it ends.
   */
  async block(scope: ConnectionScope, retryAfterMs: number): Promise<void> {
    await withPrincipal(this.pool, { kind: 'worker', orgId: scope.orgId }, (tx) =>
      tx.query(
        `update public.crm_rate_buckets
            set blocked_until = greatest(coalesce(blocked_until, clock_timestamp()), clock_timestamp() + make_interval(secs => $2::float8 / 1000.0)),
                tokens = least(tokens, 0),
                refilled_at = greatest(coalesce(blocked_until, clock_timestamp()), clock_timestamp() + make_interval(secs => $2::float8 / 1000.0))
          where connection_id = $1`,
        [scope.connectionId, retryAfterMs],
      ),
    );
  }
}
