import { randomUUID } from 'node:crypto';
import { ScheduleNotFoundError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import type pg from 'pg';
import type { Logger } from '../../lib/logger.js';
import { crmIntakeWorkflowId, crmSyncScheduleId, crmSyncWorkflowId } from '../../workflows/crm-sync-ids.js';
import { knowledgeRefreshScheduleId } from '../../workflows/knowledge-ids.js';
import { callTemporal, DEFAULT_TEMPORAL_CALL_DEADLINE_MS } from './temporal-calls.js';
import { withPrincipal, type Tx } from '../../lib/db.js';
import type { Principal } from '../../lib/principal.js';
import { cursorAt, decodeCursor, toPage, type KeysetRow } from '../pagination.js';
import { notFound } from '../problems.js';
import { DEFAULT_RESOURCE_CAPS, requireBelowCap, type ResourceCaps } from './caps.js';
import { requireOrgRole, requireUser, type OrgRole } from './org-access.js';

export interface OrgView {
  id: string;
  name: string;
  /** The caller's role: a membership's role, or an API key's scope. */
  role: OrgRole;
  createdAt: string;
}

interface OrgRow {
  id: string;
  name: string;
  role: OrgRole;
  created_at: Date;
}

const toView = (row: OrgRow): OrgView => ({ id: row.id, name: row.name, role: row.role, createdAt: row.created_at.toISOString() });

// The caller's role per row, from the same helper the policies use.
const roleColumn = `case
    when o.id in (select private.org_ids_for('owner')) then 'owner'
    when o.id in (select private.org_ids_for('admin')) then 'admin'
    else 'member'
  end as role`;

async function loadOrg(tx: Tx, orgId: string): Promise<OrgView> {
  const { rows } = await tx.query<OrgRow>(`select o.id, o.name, o.created_at, ${roleColumn} from public.organizations o where o.id = $1`, [orgId]);
  if (!rows[0]) throw notFound('Organization');
  return toView(rows[0]);
}

export function createOrgService(deps: { pool: pg.Pool; caps?: ResourceCaps; temporal?: Client; temporalDeadlineMs?: number; logger?: Logger }) {
  const caps = deps.caps ?? DEFAULT_RESOURCE_CAPS;
  /** The creator becomes the owner (a trigger adds the membership in the same transaction). */
  async function createOrg(principal: Principal, input: { name: string }): Promise<OrgView> {
    requireUser(principal, 'create organizations');
    return withPrincipal(deps.pool, principal, async (tx) => {
      // The id is chosen here because the new row is not visible to its creator until the
      // membership exists, so INSERT … RETURNING would fail its own select policy.
      const orgId = randomUUID();
      await requireBelowCap(tx, caps, 'orgsPerUser', principal.kind === 'user' ? principal.userId : 'nobody');
      await tx.query(`insert into public.organizations (id, name) values ($1, $2)`, [orgId, input.name]);
      return loadOrg(tx, orgId);
    });
  }

  async function listOrgs(principal: Principal, page: { limit: number; cursor?: string | undefined }) {
    const after = decodeCursor(page.cursor);
    return withPrincipal(deps.pool, principal, async (tx) => {
      const { rows } = await tx.query<OrgRow & KeysetRow>(
        `select o.id, o.name, o.created_at, ${cursorAt('o.created_at')}, ${roleColumn}
         from public.organizations o
         where ($1::timestamptz is null or (o.created_at, o.id) < ($1::timestamptz, $2::uuid))
         order by o.created_at desc, o.id desc limit $3`,
        [after?.createdAt ?? null, after?.id ?? null, page.limit + 1],
      );
      return toPage(rows, page.limit, toView);
    });
  }

  async function getOrg(principal: Principal, orgId: string): Promise<OrgView> {
    return withPrincipal(deps.pool, principal, (tx) => loadOrg(tx, orgId));
  }

  async function renameOrg(principal: Principal, orgId: string, input: { name: string }): Promise<OrgView> {
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      const { rows } = await tx.query<{ old_name: string }>(
        `update public.organizations o set name = $2 from (select name as old_name from public.organizations where id = $1) prev
         where o.id = $1 returning prev.old_name`,
        [orgId, input.name],
      );
      if (!rows[0]) throw notFound('Organization');
      return loadOrg(tx, orgId);
    });
  }

  /**
   * Owners only. Everything the org owns goes with it (foreign keys cascade), its audit log
   * included, and so does its work in Temporal: the CRM sync schedules and the knowledge
   * re-fetch schedules are deleted first (a
   * Temporal that does not answer leaves the org in place, 503), then the rows, then the open
   * runs and syncs are cancelled. Temporal is never called inside a transaction.
   */
  async function deleteOrg(principal: Principal, orgId: string): Promise<void> {
    const { connectionIds, openWorkflowIds, pageDocumentIds } = await withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'owner');
      const connections = await tx.query<{ id: string }>(`select id from public.crm_connections where org_id = $1`, [orgId]);
      // A web page whose refresh was switched off while Temporal did not answer may still have
      // a schedule: every web page's schedule id is tried.
      const pages = await tx.query<{ id: string }>(`select id from public.knowledge_documents where org_id = $1 and source_kind = 'url'`, [orgId]);
      const runs = await tx.query<{ workflow_id: string }>(
        `select workflow_id from public.agent_runs where org_id = $1 and status not in ('completed', 'failed', 'cancelled')`,
        [orgId],
      );
      return { connectionIds: connections.rows.map((r) => r.id), openWorkflowIds: runs.rows.map((r) => r.workflow_id), pageDocumentIds: pages.rows.map((r) => r.id) };
    });
    const temporal = deps.temporal;
    if (temporal) {
      await callTemporal(
        temporal,
        deps.temporalDeadlineMs ?? DEFAULT_TEMPORAL_CALL_DEADLINE_MS,
        async () => {
          for (const scheduleId of [...connectionIds.map(crmSyncScheduleId), ...pageDocumentIds.map(knowledgeRefreshScheduleId)]) {
            try {
              await temporal.schedule.getHandle(scheduleId).delete();
            } catch (err) {
              if (!(err instanceof ScheduleNotFoundError)) throw err;
            }
          }
        },
        'Temporal did not answer in time; the organization was not deleted. Retry.',
      );
    }
    await withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'owner');
      const { rowCount } = await tx.query(`delete from public.organizations where id = $1`, [orgId]);
      if (rowCount !== 1) throw notFound('Organization');
    });
    if (!temporal) return;
    // Best effort: the rows are gone, so a run that is not cancelled now fails at its next step.
    const cancels = [...openWorkflowIds, ...connectionIds.flatMap((id) => [crmSyncWorkflowId(id), crmIntakeWorkflowId(id)])].map(async (workflowId) => {
      try {
        await callTemporal(temporal, deps.temporalDeadlineMs ?? DEFAULT_TEMPORAL_CALL_DEADLINE_MS, () => temporal.workflow.getHandle(workflowId).cancel(), 'cancel timed out');
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError)) deps.logger?.warn({ err, workflowId }, 'could not cancel a workflow of a deleted organization');
      }
    });
    await Promise.all(cancels);
  }

  return { createOrg, listOrgs, getOrg, renameOrg, deleteOrg };
}

export type OrgService = ReturnType<typeof createOrgService>;
