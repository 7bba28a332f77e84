import type pg from 'pg';
import { z } from 'zod';
import { withPrincipal, type Tx } from '../../../lib/db.js';
import type { Principal } from '../../../lib/principal.js';
import { notFound, ProblemError } from '../../problems.js';
import { requireOrgRole } from '../org-access.js';

/**
 * What the org holds about one CRM lead (connection + the lead's id in the CRM): the agents'
 * memory of it, readable by members, and its erasure for data-protection requests, by admins,
 * in one transaction (private.erase_lead), audit-logged.
 */
export interface LeadMemoryView {
  id: string;
  summary: string;
  agentId: string | null;
  sourceRunId: string;
  createdAt: string;
}

/** What an erasure removed, as private.erase_lead counts it (the answer's schema). */
export const erasedCountsSchema = z.object({
  conversations: z.number().int(),
  messages: z.number().int(),
  memories: z.number().int(),
  records: z.number().int(),
  webhookDeliveries: z.number().int(),
  triggerFirings: z.number().int(),
  orgEvents: z.number().int(),
});
export type ErasedCounts = z.infer<typeof erasedCountsSchema>;

/** The most memories a lead's page shows (the agent is given the latest three). */
const MAX_MEMORIES = 100;

export function createLeadService(deps: { pool: pg.Pool }) {
  async function requireConnection(tx: Tx, orgId: string, connectionId: string) {
    const { rowCount } = await tx.query(`select 1 from public.crm_connections where id = $1 and org_id = $2`, [connectionId, orgId]);
    if (rowCount === 0) throw notFound('CRM connection');
  }

  async function leadMemory(principal: Principal, orgId: string, connectionId: string, leadId: string) {
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'member');
      await requireConnection(tx, orgId, connectionId);
      const { rows } = await tx.query<{ id: string; summary: string; agent_id: string | null; source_run_id: string; created_at: Date }>(
        `select id, summary, agent_id, source_run_id, created_at from public.lead_memories
          where org_id = $1 and connection_id = $2 and lead_external_id = $3
          order by created_at desc, id desc limit $4`,
        [orgId, connectionId, leadId, MAX_MEMORIES],
      );
      return {
        items: rows.map((r): LeadMemoryView => ({ id: r.id, summary: r.summary, agentId: r.agent_id, sourceRunId: r.source_run_id, createdAt: r.created_at.toISOString() })),
      };
    });
  }

  async function eraseLead(principal: Principal, orgId: string, connectionId: string, leadId: string) {
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      await requireConnection(tx, orgId, connectionId);
      try {
        const { rows } = await tx.query<{ erased: ErasedCounts | null }>(`select private.erase_lead($1, $2, $3) as erased`, [orgId, connectionId, leadId]);
        if (!rows[0]?.erased) throw notFound('CRM connection');
        return { erased: rows[0].erased };
      } catch (err) {
        if ((err as { code?: string }).code === '55006') {
          throw new ProblemError('conflict', 'A conversation with this lead is still open; cancel it (POST …/runs/:runId/cancel) and erase again.');
        }
        throw err;
      }
    });
  }

  return { leadMemory, eraseLead };
}

export type LeadService = ReturnType<typeof createLeadService>;
