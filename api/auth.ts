import type { FastifyRequest } from 'fastify';
import { errors as joseErrors, jwtVerify } from 'jose';
import { z } from 'zod';
import type { Principal } from '../lib/principal.js';
import { ProblemError } from './problems.js';

export interface AuthOptions {
  /** Supabase project JWT secret (HS256). */
  jwtSecret: string;
  /** Expected `iss`, e.g. https://<project>.supabase.co/auth/v1; enforced when set. */
  issuer?: string;
}

export type UserPrincipal = Extract<Principal, { kind: 'user' }>;

const userClaims = z.object({
  sub: z.uuid(),
  email: z.string().optional(),
});

/**
 * Verifies Supabase-issued access tokens. The algorithm is pinned (no `none`, no key confusion),
 * the audience must be `authenticated` and `exp` must be present and in the future. The
 * principal is rebuilt from the verified `sub`; the token's other claims never reach Postgres.
 */
export function createAuthenticator(options: AuthOptions) {
  const key = new TextEncoder().encode(options.jwtSecret);

  return async function authenticate(request: FastifyRequest): Promise<UserPrincipal> {
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (!match) {
      throw new ProblemError('unauthenticated', 'Send an `Authorization: Bearer <access token>` header.');
    }
    try {
      const { payload } = await jwtVerify(match[1]!, key, {
        algorithms: ['HS256'],
        audience: 'authenticated',
        requiredClaims: ['exp', 'sub'],
        ...(options.issuer ? { issuer: options.issuer } : {}),
      });
      const claims = userClaims.parse(payload);
      return { kind: 'user', userId: claims.sub, ...(claims.email ? { email: claims.email } : {}) };
    } catch (err) {
      const detail =
        err instanceof joseErrors.JWTExpired
          ? 'The access token has expired; sign in again.'
          : 'The access token is invalid.';
      throw new ProblemError('unauthenticated', detail);
    }
  };
}
