import type { FastifyRequest } from 'fastify';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { z } from 'zod';
import type { Principal } from '../lib/principal.js';
import { ProblemError } from './problems.js';

export interface AuthOptions {
  /** Supabase project JWT secret (HS256). */
  jwtSecret: string;
  /** Expected `iss`, e.g. https://<project>.supabase.co/auth/v1; enforced when set (required with a JWKS). */
  issuer?: string;
  /** Expected `aud`; Supabase issues `authenticated`. */
  audience?: string;
  /** Supabase's JWKS (https://<project>.supabase.co/auth/v1/.well-known/jwks.json) for ES256/RS256 tokens. */
  jwksUrl?: string;
  /** How long fetched signing keys are trusted before a refetch (jose `cacheMaxAge`). */
  jwksCacheMaxAgeMs?: number;
}

export type UserPrincipal = Extract<Principal, { kind: 'user' }>;
export type ApiKeyPrincipal = Extract<Principal, { kind: 'api_key' }>;
export type RequestPrincipal = UserPrincipal | ApiKeyPrincipal;

export interface AuthDeps {
  /** Resolves a presented org API key to its principal, or null when unknown or revoked. */
  authenticateApiKey(presentedKey: string): Promise<ApiKeyPrincipal | null>;
}

/** Org API keys are told apart from JWTs by their prefix (a JWT starts with `eyJ`). */
export const API_KEY_PREFIX = 'gap_';

const userClaims = z.object({
  sub: z.uuid(),
  email: z.string().optional(),
});

const ASYMMETRIC_ALGORITHMS = ['ES256', 'RS256'] as const;

/**
 * Tokens verified in the last minute, so a client's burst of requests pays for one signature
 * check. Keyed by the exact token string (the same bytes verified before), bounded in size and
 * age, and never past the token's own `exp`. The minute also bounds how long a token signed with
 * a key just removed from the JWKS stays accepted.
 */
class VerifiedTokenCache {
  static readonly maxEntries = 10_000;
  static readonly maxAgeMs = 60_000;
  readonly #entries = new Map<string, { principal: UserPrincipal; validUntilMs: number }>();

  get(token: string): UserPrincipal | undefined {
    const entry = this.#entries.get(token);
    if (!entry) return undefined;
    if (Date.now() >= entry.validUntilMs) {
      this.#entries.delete(token);
      return undefined;
    }
    return entry.principal;
  }

  set(token: string, principal: UserPrincipal, expiresAtMs: number): void {
    if (this.#entries.size >= VerifiedTokenCache.maxEntries) {
      // Oldest first (Map keeps insertion order).
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    this.#entries.set(token, { principal, validUntilMs: Math.min(expiresAtMs, Date.now() + VerifiedTokenCache.maxAgeMs) });
  }
}

/**
 * Verifies the bearer credential of a request and builds its principal.
 *
 * JWTs: Supabase access tokens signed with the project secret (HS256) or, when a JWKS URL is
 * configured, with the project's asymmetric keys (ES256/RS256). The key is chosen by the header's
 * `alg` from a pinned list and each algorithm only ever gets its own kind of key, so `none` and
 * key confusion (HS256 "signed" with a public key) fail; `aud`, `exp` and (when configured) `iss`
 * are enforced by jose. The principal is rebuilt from the verified `sub` and `email`; no other
 * claim of the token reaches Postgres.
 *
 * API keys: looked up by hash; a key only acts for its own org, so a key presented on another
 * org's path is refused here, before any tenant query runs.
 */
export function createAuthenticator(options: AuthOptions, deps: AuthDeps) {
  // Imported once: handing jose the raw bytes made it import an HMAC key on every request.
  const secret = crypto.subtle.importKey('raw', new TextEncoder().encode(options.jwtSecret), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
  const verified = new VerifiedTokenCache();
  const jwks = options.jwksUrl
    ? createRemoteJWKSet(new URL(options.jwksUrl), {
        cacheMaxAge: options.jwksCacheMaxAgeMs ?? 10 * 60_000,
        // An unknown kid triggers a refetch (key rotation) at most this often.
        cooldownDuration: 30_000,
        timeoutDuration: 5_000,
      })
    : undefined;
  const algorithms = jwks ? ['HS256', ...ASYMMETRIC_ALGORITHMS] : ['HS256'];

  const getKey: JWTVerifyGetKey = async (header, token) => {
    if (header.alg === 'HS256') return secret;
    if (jwks && (ASYMMETRIC_ALGORITHMS as readonly string[]).includes(header.alg ?? '')) return jwks(header, token);
    throw new joseErrors.JOSEAlgNotAllowed('"alg" (Algorithm) Header Parameter value not allowed');
  };

  async function verifyJwt(token: string): Promise<UserPrincipal> {
    const known = verified.get(token);
    if (known) return known;
    try {
      const { payload } = await jwtVerify(token, getKey, {
        algorithms,
        audience: options.audience ?? 'authenticated',
        requiredClaims: ['exp', 'sub'],
        ...(options.issuer ? { issuer: options.issuer } : {}),
      });
      const claims = userClaims.parse(payload);
      const principal: UserPrincipal = { kind: 'user', userId: claims.sub, ...(claims.email ? { email: claims.email.toLowerCase() } : {}) };
      verified.set(token, principal, (payload.exp as number) * 1000);
      return principal;
    } catch (err) {
      // The JWKS endpoint being unreachable is our outage, not a bad token.
      if (err instanceof joseErrors.JWKSTimeout || (err instanceof Error && !(err instanceof joseErrors.JOSEError) && !(err instanceof z.ZodError))) {
        throw new ProblemError('service-unavailable', 'Signing keys could not be fetched; retry shortly.');
      }
      const detail =
        err instanceof joseErrors.JWTExpired ? 'The access token has expired; sign in again.' : 'The access token is invalid.';
      throw new ProblemError('unauthenticated', detail);
    }
  }

  return async function authenticate(request: FastifyRequest): Promise<RequestPrincipal> {
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (!match) {
      throw new ProblemError('unauthenticated', 'Send an `Authorization: Bearer <access token or API key>` header.');
    }
    const credential = match[1]!;
    if (!credential.startsWith(API_KEY_PREFIX)) return verifyJwt(credential);

    const principal = await deps.authenticateApiKey(credential);
    if (!principal) throw new ProblemError('unauthenticated', 'The API key is invalid or has been revoked.');
    const pathOrg = (request.params as { orgId?: unknown } | undefined)?.orgId;
    if (typeof pathOrg === 'string' && pathOrg.toLowerCase() !== principal.orgId) {
      // Answered the same whether or not that org exists, so it reveals nothing about it.
      throw new ProblemError('unauthenticated', 'This API key belongs to another organization.');
    }
    return principal;
  };
}
