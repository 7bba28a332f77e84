/**
 * Who a database transaction acts for. Built by the server after it has verified the caller
 * (a Supabase JWT, or a worker's own knowledge of the run it executes), never taken from a
 * client: policies trust these claims completely.
 */
export type Principal =
  | { kind: 'user'; userId: string; email?: string }
  | { kind: 'worker'; orgId: string }
  /** An org API key, verified by its hash; `scope` is the most it may do in its org. */
  | { kind: 'api_key'; orgId: string; keyId: string; scope: ApiKeyScope }
  | { kind: 'anon' };

export type ApiKeyScope = 'member' | 'admin';

export type DatabaseRole = 'authenticated' | 'anon';

export type DatabaseSettings = { role: DatabaseRole; claims: Record<string, unknown> };

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class InvalidPrincipalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidPrincipalError';
  }
}

function requireUuid(value: string, field: string): string {
  // The policies cast these claims to uuid; a malformed one would surface as an opaque SQL
  // error in the middle of a request, so refuse it before any statement runs.
  if (!uuidPattern.test(value)) {
    throw new InvalidPrincipalError(`${field} must be a UUID, got ${JSON.stringify(value)}`);
  }
  return value.toLowerCase();
}

function requireScope(scope: string): ApiKeyScope {
  if (scope !== 'member' && scope !== 'admin') {
    throw new InvalidPrincipalError(`scope must be member or admin, got ${JSON.stringify(scope)}`);
  }
  return scope;
}

/**
 * The role and `request.jwt.claims` a transaction runs with for `principal`. The claim
 * `principal` tells the policies which kind of actor this is (see private.org_ids_for).
 */
export function databaseSettingsFor(principal: Principal): DatabaseSettings {
  switch (principal.kind) {
    case 'user': {
      const claims: Record<string, unknown> = {
        sub: requireUuid(principal.userId, 'userId'),
        role: 'authenticated',
        principal: 'user',
      };
      if (principal.email !== undefined) claims.email = principal.email;
      return { role: 'authenticated', claims };
    }
    case 'worker':
      return {
        role: 'authenticated',
        claims: { role: 'authenticated', principal: 'worker', org_id: requireUuid(principal.orgId, 'orgId') },
      };
    case 'api_key':
      return {
        role: 'authenticated',
        claims: {
          role: 'authenticated',
          principal: 'api_key',
          org_id: requireUuid(principal.orgId, 'orgId'),
          key_id: requireUuid(principal.keyId, 'keyId'),
          scope: requireScope(principal.scope),
        },
      };
    case 'anon':
      return { role: 'anon', claims: { role: 'anon' } };
    default: {
      const unknownPrincipal: never = principal;
      throw new InvalidPrincipalError(`unknown principal ${JSON.stringify(unknownPrincipal)}`);
    }
  }
}
