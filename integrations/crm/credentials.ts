/**
 * A connection's credentials at runtime: decrypts them inside the process that needs them,
 * refreshes OAuth tokens before they expire (and once more when the provider answers 401),
 * and builds a governed adapter. Secrets never leave this module except as the bearer header.
 *
 * Refresh is serialized per connection by a claim on the credentials row: the refresh token
 * rotates and the old one dies on use (Kommo, reference A1), so two refreshers racing with the
 * same token would leave one of them with a dead grant and, if it won the write, the connection
 * with a dead refresh token. The claim (`refresh_claimed_until`) is taken in a short transaction
 * and the CRM is called with none open, so a slow token endpoint never pins a pooled
 * connection; the others wait for the winner's newer `version` and use the token it stored.
 */
import type pg from 'pg';
import { decryptSecret, encryptSecret, type Keyring } from '../../lib/crypto.js';
import { withPrincipal, type Tx } from '../../lib/db.js';
import type { Principal } from '../../lib/principal.js';
import type { RateGovernor } from './governor.js';
import { CrmError } from './http.js';
import { createAdapter, requestToken, type CrmSettings } from './settings.js';
import type { CrmAdapter, CrmProvider, TokenSet } from './types.js';

export interface ConnectionInfo {
  orgId: string;
  connectionId: string;
  provider: CrmProvider;
  authKind: 'oauth' | 'token';
  status: 'pending' | 'active' | 'error' | 'revoked';
  apiBaseUrl: string | null;
}

export class ConnectionUnavailableError extends Error {
  constructor(
    readonly reason: 'not-found' | 'not-authorized' | 'reauthorization-required',
    message: string,
  ) {
    super(message);
    this.name = 'ConnectionUnavailableError';
  }
}

const column = {
  access: 'crm_credentials.access_token',
  refresh: 'crm_credentials.refresh_token',
} as const;

/** 429s one call absorbs by waiting out the governor's block (see `open`), and the longest such wait. */
const INLINE_RATE_LIMIT_REPLAYS = 3;
const INLINE_RATE_LIMIT_MAX_WAIT_MS = 5_000;

/**
 * How long a refresher owns a connection's refresh. Longer than a token request can take
 * (CRM_HTTP_TIMEOUT_MS, 30 s by default), so a live refresher never loses its claim; a
 * refresher that died is replaced after it.
 */
const REFRESH_CLAIM_SECONDS = 90;
const REFRESH_WAIT_POLL_MS = 100;

/** Refresh this long before the provider's expiry, so a page fetch never starts on a dying token. */
const REFRESH_SKEW_MS = 60_000;

export interface CredentialStoreDeps {
  pool: pg.Pool;
  keyring: Keyring;
  settings: CrmSettings;
  governor?: RateGovernor;
  fetch?: typeof fetch;
}

interface CachedToken {
  accessToken: string;
  expiresAt: Date | null;
  version: number;
}

export async function loadConnection(tx: Tx, orgId: string, connectionId: string): Promise<ConnectionInfo | null> {
  const { rows } = await tx.query<{ provider: CrmProvider; auth_kind: 'oauth' | 'token'; status: ConnectionInfo['status']; api_base_url: string | null }>(
    `select provider, auth_kind, status, api_base_url from public.crm_connections where id = $1 and org_id = $2`,
    [connectionId, orgId],
  );
  const row = rows[0];
  return row ? { orgId, connectionId, provider: row.provider, authKind: row.auth_kind, status: row.status, apiBaseUrl: row.api_base_url } : null;
}

/** Stores a freshly issued token set (connect, private-app token, rotation) in `tx`. */
export async function storeTokens(tx: Tx, keyring: Keyring, ref: { orgId: string; connectionId: string }, tokens: TokenSet): Promise<void> {
  const ctx = (c: string) => ({ orgId: ref.orgId, rowId: ref.connectionId, column: c });
  await tx.query(
    `insert into public.crm_credentials (org_id, connection_id, access_token, refresh_token, access_token_expires_at)
     values ($1, $2, $3, $4, $5)
     on conflict (connection_id) do update
       set access_token = excluded.access_token, refresh_token = excluded.refresh_token,
           access_token_expires_at = excluded.access_token_expires_at, version = crm_credentials.version + 1,
           refresh_claimed_until = null`,
    [
      ref.orgId,
      ref.connectionId,
      encryptSecret(keyring, tokens.accessToken, ctx(column.access)),
      tokens.refreshToken ? encryptSecret(keyring, tokens.refreshToken, ctx(column.refresh)) : null,
      tokens.expiresAt,
    ],
  );
}

export class CredentialStore {
  constructor(private readonly deps: CredentialStoreDeps) {}

  private worker(orgId: string): Principal {
    return { kind: 'worker', orgId };
  }

  private async readToken(tx: Tx, ref: { orgId: string; connectionId: string }, lock: boolean) {
    const { rows } = await tx.query<{ access_token: string; refresh_token: string | null; access_token_expires_at: Date | null; version: number; refresh_claimed: boolean }>(
      `select access_token, refresh_token, access_token_expires_at, version, coalesce(refresh_claimed_until > now(), false) as refresh_claimed from public.crm_credentials
        where connection_id = $1 and org_id = $2 ${lock ? 'for update' : ''}`,
      [ref.connectionId, ref.orgId],
    );
    const row = rows[0];
    if (!row) return null;
    const ctx = (c: string) => ({ orgId: ref.orgId, rowId: ref.connectionId, column: c });
    return {
      accessToken: decryptSecret(this.deps.keyring, row.access_token, ctx(column.access)),
      refreshToken: row.refresh_token ? decryptSecret(this.deps.keyring, row.refresh_token, ctx(column.refresh)) : null,
      expiresAt: row.access_token_expires_at,
      version: row.version,
      refreshClaimed: row.refresh_claimed,
    };
  }

  /**
   * Refreshes the access token unless someone already did since `seenVersion`. Claims the
   * refresh in one short transaction, asks the CRM with no transaction open, and stores the new
   * tokens (clearing the claim) in another. While someone else holds the claim, waits for their
   * newer version, or for the claim to lapse if they died.
   */
  async refresh(info: ConnectionInfo, seenVersion: number, principal: Principal = this.worker(info.orgId)): Promise<CachedToken> {
    for (;;) {
      const claim = await withPrincipal(this.deps.pool, principal, async (tx) => {
        const current = await this.readToken(tx, info, true);
        if (!current) throw new ConnectionUnavailableError('not-authorized', 'the connection has no credentials');
        if (current.version !== seenVersion) return { kind: 'refreshed' as const, token: { accessToken: current.accessToken, expiresAt: current.expiresAt, version: current.version } };
        if (!current.refreshToken) throw new ConnectionUnavailableError('reauthorization-required', 'the token was rejected and this connection has no refresh token; enter a new token');
        if (current.refreshClaimed) return { kind: 'wait' as const };
        await tx.query(`update public.crm_credentials set refresh_claimed_until = now() + make_interval(secs => $3) where connection_id = $1 and org_id = $2`, [
          info.connectionId,
          info.orgId,
          REFRESH_CLAIM_SECONDS,
        ]);
        return { kind: 'claimed' as const, refreshToken: current.refreshToken };
      });
      if (claim.kind === 'refreshed') return claim.token;
      if (claim.kind === 'wait') {
        await new Promise((resolve) => setTimeout(resolve, REFRESH_WAIT_POLL_MS));
        continue;
      }
      let issued: TokenSet;
      try {
        issued = await requestToken(this.deps.settings, info, { kind: 'refresh_token', refreshToken: claim.refreshToken });
      } catch (err) {
        const revoked = err instanceof CrmError && err.kind === 'auth';
        await withPrincipal(this.deps.pool, principal, async (tx) => {
          await tx.query(`update public.crm_credentials set refresh_claimed_until = null where connection_id = $1 and org_id = $2 and version = $3`, [info.connectionId, info.orgId, seenVersion]);
          if (revoked) {
            await tx.query(`update public.crm_connections set status = 'error', last_error = $3 where id = $1 and org_id = $2`, [
              info.connectionId,
              info.orgId,
              { type: 'reauthorization-required', message: 'The CRM rejected the refresh token; connect the account again.' },
            ]);
          }
        });
        if (revoked) throw new ConnectionUnavailableError('reauthorization-required', (err as CrmError).message);
        throw err;
      }
      await withPrincipal(this.deps.pool, principal, (tx) => storeTokens(tx, this.deps.keyring, info, issued));
      return { accessToken: issued.accessToken, expiresAt: issued.expiresAt, version: seenVersion + 1 };
    }
  }

  /**
   * An adapter for the connection whose requests carry a current token, go through the rate
   * governor (when `governed`), and survive one 401 by refreshing (OAuth connections).
   */
  async open(
    ref: { orgId: string; connectionId: string },
    opts: { governed?: boolean; principal?: Principal; requireActive?: boolean } = {},
  ): Promise<{ adapter: CrmAdapter; info: ConnectionInfo }> {
    const principal = opts.principal ?? this.worker(ref.orgId);
    const loaded = await withPrincipal(this.deps.pool, principal, async (tx) => {
      const info = await loadConnection(tx, ref.orgId, ref.connectionId);
      if (!info) return null;
      return { info, token: await this.readToken(tx, ref, false) };
    });
    if (!loaded) throw new ConnectionUnavailableError('not-found', `connection ${ref.connectionId} does not exist in this org`);
    const { info } = loaded;
    if (!loaded.token) throw new ConnectionUnavailableError('not-authorized', 'the connection has not been authorized yet');
    if ((opts.requireActive ?? true) && info.status !== 'active') {
      throw new ConnectionUnavailableError('reauthorization-required', `the connection is ${info.status}; fix or reconnect it`);
    }
    let cached: CachedToken = { accessToken: loaded.token.accessToken, expiresAt: loaded.token.expiresAt, version: loaded.token.version };
    const canRefresh = info.authKind === 'oauth';

    const accessToken = async () => {
      if (canRefresh && cached.expiresAt && cached.expiresAt.getTime() - REFRESH_SKEW_MS < Date.now()) {
        cached = await this.refresh(info, cached.version, principal);
      }
      return cached.accessToken;
    };
    const governor = opts.governed === false ? undefined : this.deps.governor;
    const adapter = createAdapter(
      this.deps.settings,
      info,
      accessToken,
      governor
        ? {
            beforeRequest: async () => {
              await governor.take(ref, info.provider);
            },
            onRateLimited: (ms) => governor.block(ref, ms),
          }
        : {},
      this.deps.fetch,
    );
    if (!canRefresh && !governor) return { adapter, info };

    // Two replays happen here rather than in Temporal:
    // - one refresh-and-replay on 401, as the Kommo SDK does (reference A4): an access token can
    //   die before its stated expiry (revoked, clock skew, a fake that expires it on purpose);
    // - a 429 with a short wait (Kommo asks for under a second) is replayed after the governor's
    //   block, which the replay's own `take` waits out. Temporal spaces activity attempts at
    //   least ~1 s apart whatever `nextRetryDelay` says (measured on the dev server: 300 ms and
    //   100 ms initial intervals both came back after 1.0 s), so failing the activity for a
    //   300 ms Retry-After cost a second per 429. Longer waits, and 429s that keep coming, still
    //   fail the activity and are retried by Temporal after the provider's wait.
    const replayed = new Proxy(adapter, {
      get: (target, prop, receiver) => {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== 'function') return value;
        // Synchronous methods stay synchronous. The messenger's requests carry the current token but
        // are not replayed after a 401 or an inline 429 (the send activity's retries cover 429).
        if (prop === 'supportsDeletionFeed' || prop === 'messenger') return (value as (...a: unknown[]) => unknown).bind(target);
        return async (...args: unknown[]) => {
          let refreshed = false;
          let rateLimited = 0;
          for (;;) {
            try {
              return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
            } catch (err) {
              if (!(err instanceof CrmError)) throw err;
              if (err.kind === 'auth' && canRefresh && !refreshed) {
                refreshed = true;
                cached = await this.refresh(info, cached.version, principal);
                continue;
              }
              const waitMs = err.details.retryAfterMs ?? Infinity;
              if (err.kind === 'rate-limited' && governor && rateLimited < INLINE_RATE_LIMIT_REPLAYS && waitMs <= INLINE_RATE_LIMIT_MAX_WAIT_MS) {
                rateLimited++;
                continue;
              }
              throw err;
            }
          }
        };
      },
    });
    return { adapter: replayed, info };
  }
}
