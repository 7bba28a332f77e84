import { randomInt } from 'node:crypto';
import type pg from 'pg';
import { randomToken, sha256Hex } from '../../lib/crypto.js';
import { withPrincipal } from '../../lib/db.js';
import type { ApiKeyScope, Principal } from '../../lib/principal.js';
import type { ApiKeyPrincipal } from '../auth.js';
import { cursorAt, decodeCursor, toPage, type KeysetRow } from '../pagination.js';
import { notFound } from '../problems.js';
import { DEFAULT_RESOURCE_CAPS, requireBelowCap, type ResourceCaps } from './caps.js';
import { requireOrgRole, requireUser } from './org-access.js';

/**
 * Org API keys: `gap_live_<8 chars>_<43 chars>`. The first part is the visible prefix, shown in
 * lists; the rest is 256 bits from the CSPRNG. Only SHA-256 of the whole key is stored: with
 * that much entropy a slow password hash buys nothing (there is no dictionary to try), and a
 * fast one keeps authentication a single indexed lookup.
 */
const KEY_PATTERN = /^gap_live_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}$/;
const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export function generateApiKey(): { key: string; prefix: string; hash: Buffer } {
  let visible = '';
  for (let i = 0; i < 8; i++) visible += ALPHANUMERIC[randomInt(ALPHANUMERIC.length)];
  const prefix = `gap_live_${visible}`;
  const key = `${prefix}_${randomToken(32)}`;
  return { key, prefix, hash: hashApiKey(key) };
}

export function hashApiKey(key: string): Buffer {
  return Buffer.from(sha256Hex(key), 'hex');
}

/**
 * The API's key check. Runs as the login role through the one narrow security definer function
 * (private.authenticate_api_key), never as service_role: no principal exists yet.
 */
export function createApiKeyAuthenticator(pool: pg.Pool) {
  return async function authenticateApiKey(presented: string): Promise<ApiKeyPrincipal | null> {
    if (!KEY_PATTERN.test(presented)) return null;
    const { rows } = await pool.query<{ key_id: string; org_id: string; scope: ApiKeyScope }>(
      'select key_id, org_id, scope from private.authenticate_api_key($1)',
      [hashApiKey(presented)],
    );
    const row = rows[0];
    return row ? { kind: 'api_key', orgId: row.org_id, keyId: row.key_id, scope: row.scope } : null;
  };
}

export interface ApiKeyView {
  id: string;
  name: string;
  prefix: string;
  scope: ApiKeyScope;
  createdBy: string | null;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

interface ApiKeyRow {
  id: string;
  name: string;
  prefix: string;
  scope: ApiKeyScope;
  created_by: string | null;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

const columns = 'id, name, prefix, scope, created_by, created_at, last_used_at, revoked_at';

function toView(row: ApiKeyRow): ApiKeyView {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    scope: row.scope,
    createdBy: row.created_by,
    createdAt: row.created_at.toISOString(),
    lastUsedAt: row.last_used_at?.toISOString() ?? null,
    revokedAt: row.revoked_at?.toISOString() ?? null,
  };
}

export function createApiKeyService(deps: { pool: pg.Pool; caps?: ResourceCaps }) {
  const caps = deps.caps ?? DEFAULT_RESOURCE_CAPS;
  async function createKey(principal: Principal, orgId: string, input: { name: string; scope: ApiKeyScope }) {
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      const user = requireUser(principal, 'create API keys');
      await requireBelowCap(tx, caps, 'apiKeysPerOrg', orgId);
      const { key, prefix, hash } = generateApiKey();
      const { rows } = await tx.query<ApiKeyRow>(
        `insert into public.api_keys (org_id, name, prefix, key_hash, scope, created_by)
         values ($1, $2, $3, $4, $5, $6) returning ${columns}`,
        [orgId, input.name, prefix, hash, input.scope, user.userId],
      );
      const row = rows[0]!;
      return { ...toView(row), key };
    });
  }

  async function listKeys(principal: Principal, orgId: string, page: { limit: number; cursor?: string | undefined }) {
    const after = decodeCursor(page.cursor);
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      const { rows } = await tx.query<ApiKeyRow & KeysetRow>(
        `select ${columns}, ${cursorAt('created_at')} from public.api_keys
         where org_id = $1 and ($2::timestamptz is null or (created_at, id) < ($2::timestamptz, $3::uuid))
         order by created_at desc, id desc limit $4`,
        [orgId, after?.createdAt ?? null, after?.id ?? null, page.limit + 1],
      );
      return toPage(rows, page.limit, toView);
    });
  }

  /** Revoking twice is harmless and recorded once. */
  async function revokeKey(principal: Principal, orgId: string, keyId: string): Promise<void> {
    await withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      const revokedBy = principal.kind === 'user' ? `user:${principal.userId}` : principal.kind === 'api_key' ? `api_key:${principal.keyId}` : principal.kind;
      const { rows } = await tx.query<{ id: string; prefix: string; revoked_at: Date | null }>(
        `select id, prefix, revoked_at from public.api_keys where id = $1 and org_id = $2 for update`,
        [keyId, orgId],
      );
      const key = rows[0];
      if (!key) throw notFound('API key');
      if (key.revoked_at) return;
      await tx.query(`update public.api_keys set revoked_at = now(), revoked_by = $2 where id = $1`, [key.id, revokedBy]);
    });
  }

  return { createKey, listKeys, revokeKey };
}

export type ApiKeyService = ReturnType<typeof createApiKeyService>;
