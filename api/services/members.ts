import type pg from 'pg';
import { withPrincipal, type Tx } from '../../lib/db.js';
import type { Principal } from '../../lib/principal.js';
import { cursorAt, decodeCursor, toPage, type KeysetRow } from '../pagination.js';
import { notFound, ProblemError } from '../problems.js';
import { outranks, requireOrgRole, type OrgRole } from './org-access.js';

export interface MemberView {
  userId: string;
  /** From the sign-in token that created the membership; null when it was added otherwise. */
  email: string | null;
  role: OrgRole;
  createdAt: string;
}

interface MemberRow {
  id: string;
  email: string | null;
  role: OrgRole;
  created_at: Date;
}

const toView = (row: MemberRow): MemberView => ({ userId: row.id, email: row.email, role: row.role, createdAt: row.created_at.toISOString() });

const columns = `user_id as id, email, role, created_at`;

/** The database refuses to leave an org without an owner (private.keep_last_owner). */
function isLastOwnerViolation(error: unknown): boolean {
  return (error as { constraint?: unknown }).constraint === 'organization_members_last_owner';
}

const lastOwner = () =>
  new ProblemError('conflict', 'The organization needs at least one owner: make another member an owner first, or delete the organization.');

async function loadMember(tx: Tx, orgId: string, userId: string): Promise<MemberRow> {
  const { rows } = await tx.query<MemberRow>(
    `select ${columns} from public.organization_members where org_id = $1 and user_id = $2`,
    [orgId, userId],
  );
  if (!rows[0]) throw notFound('Member');
  return rows[0];
}

export function createMemberService(deps: { pool: pg.Pool }) {
  async function listMembers(principal: Principal, orgId: string, page: { limit: number; cursor?: string | undefined }) {
    const after = decodeCursor(page.cursor);
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'member');
      const { rows } = await tx.query<MemberRow & KeysetRow>(
        `select ${columns}, ${cursorAt('created_at')} from public.organization_members
         where org_id = $1 and ($2::timestamptz is null or (created_at, user_id) < ($2::timestamptz, $3::uuid))
         order by created_at desc, user_id desc limit $4`,
        [orgId, after?.createdAt ?? null, after?.id ?? null, page.limit + 1],
      );
      return toPage(rows, page.limit, toView);
    });
  }

  async function getMember(principal: Principal, orgId: string, userId: string): Promise<MemberView> {
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'member');
      const { rows } = await tx.query<MemberRow>(
        `select ${columns} from public.organization_members where org_id = $1 and user_id = $2`,
        [orgId, userId],
      );
      if (!rows[0]) throw notFound('Member');
      return toView(rows[0]);
    });
  }

  /** Admins change admins and members; anything touching the owner role takes an owner. */
  async function changeRole(principal: Principal, orgId: string, userId: string, role: OrgRole): Promise<MemberView> {
    try {
      return await withPrincipal(deps.pool, principal, async (tx) => {
        const callerRole = await requireOrgRole(tx, orgId, 'admin');
        // A key must not mint the people who manage keys: admins are made by people.
        if (principal.kind === 'api_key' && role !== 'member') throw new ProblemError('forbidden', 'API keys cannot make admins or owners; a person must.');
        const member = await loadMember(tx, orgId, userId);
        if ((member.role === 'owner' || role === 'owner') && !outranks(callerRole, 'owner')) {
          throw new ProblemError('forbidden', 'Only an owner can make or unmake owners.');
        }
        if (member.role === role) return toView(member);
        const { rows } = await tx.query<MemberRow>(
          `update public.organization_members set role = $3 where org_id = $1 and user_id = $2 returning ${columns}`,
          [orgId, userId, role],
        );
        return toView(rows[0]!);
      });
    } catch (error) {
      if (isLastOwnerViolation(error)) throw lastOwner();
      throw error;
    }
  }

  /** Admins remove admins and members, owners anyone; everyone may remove themselves (leave). */
  async function removeMember(principal: Principal, orgId: string, userId: string): Promise<void> {
    try {
      await withPrincipal(deps.pool, principal, async (tx) => {
        const leaving = principal.kind === 'user' && principal.userId === userId.toLowerCase();
        const callerRole = await requireOrgRole(tx, orgId, leaving ? 'member' : 'admin');
        const member = await loadMember(tx, orgId, userId);
        if (!leaving && member.role === 'owner' && !outranks(callerRole, 'owner')) {
          throw new ProblemError('forbidden', 'Only an owner can remove an owner.');
        }
        await tx.query(`delete from public.organization_members where org_id = $1 and user_id = $2`, [orgId, userId]);
      });
    } catch (error) {
      if (isLastOwnerViolation(error)) throw lastOwner();
      throw error;
    }
  }

  return { listMembers, getMember, changeRole, removeMember };
}

export type MemberService = ReturnType<typeof createMemberService>;
