import type { Tx } from '../../lib/db.js';
import { ProblemError } from '../problems.js';

/**
 * How many of each thing one user or org may hold (issue 12, item 6): a runaway script or a
 * hostile tenant fills its own quota, never the database. Operators set them (LIMIT_* in
 * docs/configuration.md); a create past a cap answers 409 `limit-reached`.
 */
export interface ResourceCaps {
  /** Organizations one person owns. */
  orgsPerUser: number;
  agentsPerOrg: number;
  knowledgeDocumentsPerOrg: number;
  /** Unrevoked API keys. */
  apiKeysPerOrg: number;
  /** Pending invites (not accepted, revoked or expired). */
  invitesPerOrg: number;
  /** Org webhook endpoints: each is a URL every org event is delivered to. */
  webhookEndpointsPerOrg: number;
}

export const DEFAULT_RESOURCE_CAPS: ResourceCaps = {
  orgsPerUser: 20,
  agentsPerOrg: 200,
  knowledgeDocumentsPerOrg: 10_000,
  apiKeysPerOrg: 50,
  invitesPerOrg: 500,
  webhookEndpointsPerOrg: 20,
};

const counts = {
  orgsPerUser: `select count(*) from public.organization_members where user_id = (select auth.uid()) and role = 'owner'`,
  agentsPerOrg: `select count(*) from public.agents where org_id = $1`,
  knowledgeDocumentsPerOrg: `select count(*) from public.knowledge_documents where org_id = $1`,
  apiKeysPerOrg: `select count(*) from public.api_keys where org_id = $1 and revoked_at is null`,
  invitesPerOrg: `select count(*) from public.invites where org_id = $1 and accepted_at is null and revoked_at is null and expires_at > now()`,
  webhookEndpointsPerOrg: `select count(*) from public.webhook_endpoints where org_id = $1`,
} satisfies Record<keyof ResourceCaps, string>;

const nouns: Record<keyof ResourceCaps, string> = {
  orgsPerUser: 'organizations you own',
  agentsPerOrg: 'agents',
  knowledgeDocumentsPerOrg: 'knowledge documents',
  apiKeysPerOrg: 'active API keys',
  invitesPerOrg: 'pending invites',
  webhookEndpointsPerOrg: 'webhook endpoints',
};

/**
 * Refuses a create that would pass the cap. Concurrent creates of the same kind for the same
 * owner (org, or user) queue on a transaction lock, so they cannot all pass the count at once.
 */
export async function requireBelowCap(tx: Tx, caps: ResourceCaps, kind: keyof ResourceCaps, owner: string): Promise<void> {
  await tx.query(`select pg_advisory_xact_lock(hashtextextended($1, 0))`, [`cap:${kind}:${owner}`]);
  const { rows } = await tx.query<{ count: string }>(counts[kind], kind === 'orgsPerUser' ? [] : [owner]);
  if (Number(rows[0]!.count) >= caps[kind]) {
    throw new ProblemError('limit-reached', `This would be more than ${caps[kind]} ${nouns[kind]}, the most allowed; remove one first or ask the operator.`);
  }
}
