import type pg from 'pg';
import { randomToken, sha256Hex } from '../../lib/crypto.js';
import { withPrincipal } from '../../lib/db.js';
import type { Principal } from '../../lib/principal.js';
import { cursorAt, decodeCursor, toPage, type KeysetRow } from '../pagination.js';
import { notFound, ProblemError } from '../problems.js';
import { DEFAULT_RESOURCE_CAPS, requireBelowCap, type ResourceCaps } from './caps.js';
import { requireOrgRole, requireUser } from './org-access.js';

/**
 * Invites: an admin invites an email address with a role; the token (256 random bits) is shown
 * once and only its SHA-256 is stored. The invitee accepts while signed in with that email; the
 * database lets a person add themselves to an org only while such a pending invite exists
 * (policy organization_members_insert, private.has_pending_invite).
 */
export const DEFAULT_INVITE_TTL_HOURS = 72;
const TOKEN_PATTERN = /^inv_[A-Za-z0-9_-]{43}$/;

export type InviteRole = 'admin' | 'member';
export type InviteStatus = 'pending' | 'accepted' | 'revoked' | 'expired';

export interface InviteView {
  id: string;
  email: string;
  role: InviteRole;
  status: InviteStatus;
  invitedBy: string | null;
  createdAt: string;
  expiresAt: string;
}

interface InviteRow {
  id: string;
  org_id: string;
  email: string;
  role: InviteRole;
  invited_by: string | null;
  created_at: Date;
  expires_at: Date;
  accepted_at: Date | null;
  revoked_at: Date | null;
}

const columns = 'id, org_id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at';

function statusOf(row: InviteRow, now = new Date()): InviteStatus {
  if (row.accepted_at) return 'accepted';
  if (row.revoked_at) return 'revoked';
  return row.expires_at <= now ? 'expired' : 'pending';
}

const toView = (row: InviteRow): InviteView => ({
  id: row.id,
  email: row.email,
  role: row.role,
  status: statusOf(row),
  invitedBy: row.invited_by,
  createdAt: row.created_at.toISOString(),
  expiresAt: row.expires_at.toISOString(),
});

const hashToken = (token: string) => Buffer.from(sha256Hex(token), 'hex');

export function createInviteService(deps: { pool: pg.Pool; caps?: ResourceCaps }) {
  const caps = deps.caps ?? DEFAULT_RESOURCE_CAPS;
  async function createInvite(principal: Principal, orgId: string, input: { email: string; role: InviteRole; expiresInHours?: number | undefined }) {
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      // A key must not mint the people who manage keys: admins are made by people.
      if (principal.kind === 'api_key' && input.role !== 'member') throw new ProblemError('forbidden', 'API keys invite members only; a person makes admins.');
      await requireBelowCap(tx, caps, 'invitesPerOrg', orgId);
      const token = `inv_${randomToken(32)}`;
      const email = input.email.toLowerCase();
      const { rows } = await tx.query<InviteRow>(
        `insert into public.invites (org_id, email, role, token_hash, invited_by, expires_at)
         values ($1, $2, $3, $4, $5, now() + make_interval(hours => $6))
         returning ${columns}`,
        [orgId, email, input.role, hashToken(token), principal.kind === 'user' ? principal.userId : null, input.expiresInHours ?? DEFAULT_INVITE_TTL_HOURS],
      );
      const row = rows[0]!;
      return { ...toView(row), token };
    });
  }

  async function listInvites(principal: Principal, orgId: string, page: { limit: number; cursor?: string | undefined }) {
    const after = decodeCursor(page.cursor);
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      const { rows } = await tx.query<InviteRow & KeysetRow>(
        `select ${columns}, ${cursorAt('created_at')} from public.invites
         where org_id = $1 and ($2::timestamptz is null or (created_at, id) < ($2::timestamptz, $3::uuid))
         order by created_at desc, id desc limit $4`,
        [orgId, after?.createdAt ?? null, after?.id ?? null, page.limit + 1],
      );
      return toPage(rows, page.limit, toView);
    });
  }

  async function revokeInvite(principal: Principal, orgId: string, inviteId: string): Promise<void> {
    await withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      const { rows } = await tx.query<InviteRow>(`select ${columns} from public.invites where id = $1 and org_id = $2`, [inviteId, orgId]);
      const invite = rows[0];
      if (!invite) throw notFound('Invite');
      if (invite.accepted_at) throw new ProblemError('invite-used', 'This invite was already accepted; remove the member instead.');
      if (invite.revoked_at) return;
      await tx.query(`update public.invites set revoked_at = now() where id = $1`, [inviteId]);
    });
  }

  /** The signed-in user whose email the invite was sent to joins with the invited role. */
  async function acceptInvite(principal: Principal, token: string): Promise<{ orgId: string; role: InviteRole }> {
    const user = requireUser(principal, 'accept invites');
    const unknown = () => notFound('Invite for your email address');
    if (!TOKEN_PATTERN.test(token)) throw unknown();
    return withPrincipal(deps.pool, user, async (tx) => {
      // Visible only to the invitee's email (and the org's admins), so a token sent to someone
      // else reads as unknown.
      const { rows } = await tx.query<InviteRow>(`select ${columns} from public.invites where token_hash = $1 for update`, [hashToken(token)]);
      const invite = rows[0];
      if (!invite || invite.email !== user.email) throw unknown();
      const status = statusOf(invite);
      if (status === 'accepted') throw new ProblemError('invite-used', 'This invite has already been used.');
      if (status === 'revoked') throw new ProblemError('invite-expired', 'This invite was revoked; ask for a new one.');
      if (status === 'expired') throw new ProblemError('invite-expired', 'This invite has expired; ask for a new one.');

      const { rowCount: alreadyMember } = await tx.query(
        `select 1 from public.organization_members where org_id = $1 and user_id = $2`,
        [invite.org_id, user.userId],
      );
      if (alreadyMember) throw new ProblemError('conflict', 'You are already a member of this organization.');

      await tx.query(`insert into public.organization_members (org_id, user_id, role) values ($1, $2, $3)`, [invite.org_id, user.userId, invite.role]);
      await tx.query(`update public.invites set accepted_at = now(), accepted_by = $2 where id = $1`, [invite.id, user.userId]);
      return { orgId: invite.org_id, role: invite.role };
    });
  }

  return { createInvite, listInvites, revokeInvite, acceptInvite };
}

export type InviteService = ReturnType<typeof createInviteService>;
