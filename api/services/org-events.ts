import type pg from 'pg';
import { withPrincipal } from '../../lib/db.js';
import type { OrgEventType } from '../../lib/org-events.js';
import type { Principal } from '../../lib/principal.js';
import { requireOrgRole } from './org-access.js';

/** The org's events as the live feed serves them: numbered by `seq` (commit order), read through RLS. */
export function createOrgEventService(deps: { pool: pg.Pool }) {
  /** Checks the caller may follow the org's feed (members; 404 outside the org). */
  async function assertCanFollow(principal: Principal, orgId: string): Promise<void> {
    await withPrincipal(deps.pool, principal, (tx) => requireOrgRole(tx, orgId, 'member'));
  }

  async function eventsAfter(principal: Principal, orgId: string, afterSeq: number, limit = 500) {
    return withPrincipal(deps.pool, principal, async (tx) => {
      const { rows } = await tx.query<{ id: string; seq: string; type: OrgEventType; payload: Record<string, unknown>; created_at: Date }>(
        `select id, seq, type, payload, created_at from public.org_events where org_id = $1 and seq > $2 order by seq limit $3`,
        [orgId, afterSeq, limit],
      );
      return rows.map((r) => ({ id: r.id, seq: Number(r.seq), type: r.type, data: r.payload, createdAt: r.created_at.toISOString() }));
    });
  }

  return { assertCanFollow, eventsAfter };
}

export type OrgEventService = ReturnType<typeof createOrgEventService>;
