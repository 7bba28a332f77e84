import type pg from 'pg';
import { z } from 'zod';
import { withPrincipal } from '../../lib/db.js';
import type { Principal } from '../../lib/principal.js';
import { MAX_PAGE_SIZE } from '../pagination.js';
import { ProblemError } from '../problems.js';
import { requireOrgRole } from './org-access.js';

/**
 * The audit log of security-relevant actions. Entries are written by the database itself
 * (private.audit_change, one trigger per audited table) in the transaction that makes the change,
 * so an action and its record commit or vanish together and no caller can write, edit or forge
 * one; the actor comes from the transaction's principal. This service only reads them.
 */
export interface AuditView {
  id: string;
  actor: { type: 'user' | 'api_key' | 'worker' | 'system'; id: string | null };
  action: string;
  target: { type: string; id: string | null } | null;
  metadata: Record<string, unknown>;
  createdAt: string;
}

interface AuditRow {
  id: string;
  actor_type: AuditView['actor']['type'];
  actor_id: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  metadata: Record<string, unknown>;
  created_at: Date;
}

// Entries are ordered by their identity id (commit order is close enough for an audit trail and
// the id is unique), so the cursor is simply the last id served.
const cursorSchema = z.string().regex(/^[1-9][0-9]{0,18}$/);

function decodeAuditCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined;
  const parsed = cursorSchema.safeParse(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!parsed.success) {
    throw new ProblemError('validation-error', 'The cursor is invalid; use the nextCursor of a previous page.', [
      { path: 'querystring.cursor', message: 'is invalid' },
    ]);
  }
  return parsed.data;
}

export function createAuditService(deps: { pool: pg.Pool }) {
  async function listAuditLog(principal: Principal, orgId: string, page: { limit: number; cursor?: string | undefined }) {
    const after = decodeAuditCursor(page.cursor);
    const limit = Math.min(page.limit, MAX_PAGE_SIZE);
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      const { rows } = await tx.query<AuditRow>(
        `select id::text as id, actor_type, actor_id, action, target_type, target_id, metadata, created_at
         from public.audit_log
         where org_id = $1 and ($2::bigint is null or id < $2::bigint)
         order by id desc
         limit $3`,
        [orgId, after ?? null, limit + 1],
      );
      const items = rows.slice(0, limit);
      const last = items[items.length - 1];
      return {
        items: items.map(
          (row): AuditView => ({
            id: row.id,
            actor: { type: row.actor_type, id: row.actor_id },
            action: row.action,
            target: row.target_type ? { type: row.target_type, id: row.target_id } : null,
            metadata: row.metadata,
            createdAt: row.created_at.toISOString(),
          }),
        ),
        nextCursor: rows.length > limit && last ? Buffer.from(last.id).toString('base64url') : null,
      };
    });
  }
  return { listAuditLog };
}

export type AuditService = ReturnType<typeof createAuditService>;
