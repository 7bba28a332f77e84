import type { Tx } from '../../lib/db.js';
import type { Principal } from '../../lib/principal.js';
import { notFound, ProblemError } from '../problems.js';

export type OrgRole = 'member' | 'admin' | 'owner';

const rank: Record<OrgRole, number> = { member: 1, admin: 2, owner: 3 };

/**
 * The caller's rank in `orgId`, read through the same helper the policies use
 * (private.org_ids_for), so users, API keys (ranked as their scope) and workers (members) answer
 * alike and the API's decisions match the database's. Null when the caller has no access.
 */
export async function orgRoleOf(tx: Tx, orgId: string): Promise<OrgRole | null> {
  const { rows } = await tx.query<{ role: OrgRole | null }>(
    `select case
       when $1::uuid in (select private.org_ids_for('owner')) then 'owner'
       when $1::uuid in (select private.org_ids_for('admin')) then 'admin'
       when $1::uuid in (select private.org_ids_for('member')) then 'member'
     end as role`,
    [orgId],
  );
  return rows[0]?.role ?? null;
}

/**
 * Checks the caller's role in `orgId` inside the request's transaction. RLS already keeps
 * writes to the right roles; this only turns "not allowed" into the right answer: 404 for a
 * non-member (the org's existence is not revealed), 403 for a member without the role.
 * Returns the caller's role.
 */
export async function requireOrgRole(tx: Tx, orgId: string, minRole: OrgRole): Promise<OrgRole> {
  const role = await orgRoleOf(tx, orgId);
  if (!role) throw notFound('Organization');
  if (!outranks(role, minRole)) throw new ProblemError('forbidden', `This needs the ${minRole} role in the organization.`);
  return role;
}

export function outranks(role: OrgRole, minRole: OrgRole): boolean {
  return rank[role] >= rank[minRole];
}

/** Some actions need a person: founding orgs, creating API keys, accepting invites. */
export function requireUser(principal: Principal, action: string): Extract<Principal, { kind: 'user' }> {
  if (principal.kind !== 'user') throw new ProblemError('forbidden', `Only a signed-in user can ${action}; API keys cannot.`);
  return principal;
}
