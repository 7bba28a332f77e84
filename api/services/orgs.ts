import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { withPrincipal, type Tx } from '../../lib/db.js';
import type { Principal } from '../../lib/principal.js';
import { decodeCursor, toPage } from '../pagination.js';
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

export function createOrgService(deps: { pool: pg.Pool; caps?: ResourceCaps }) {
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
      const { rows } = await tx.query<OrgRow>(
        `select o.id, o.name, o.created_at, ${roleColumn}
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

  /** Owners only. Everything the org owns goes with it (foreign keys cascade), its audit log included. */
  async function deleteOrg(principal: Principal, orgId: string): Promise<void> {
    await withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'owner');
      const { rowCount } = await tx.query(`delete from public.organizations where id = $1`, [orgId]);
      if (rowCount !== 1) throw notFound('Organization');
    });
  }

  return { createOrg, listOrgs, getOrg, renameOrg, deleteOrg };
}

export type OrgService = ReturnType<typeof createOrgService>;
