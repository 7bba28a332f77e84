/**
 * Binds a demo org's agent to the sandbox CRM (scripts/stack/sandbox-crm.ts): a Kommo connection
 * whose API is the sandbox, with the sandbox's long-lived token stored encrypted like any other,
 * the URL secret of its webhooks stored as a hash, and the agent answering the leads' incoming
 * messages after a short response delay. Operator tooling: it runs as the database owner, never on
 * a request path, and is idempotent (a restart rebinds the same rows to the new sandbox port).
 */
import type pg from 'pg';
import { storeTokens } from '../../integrations/crm/credentials.js';
import { sha256Hex, type Keyring } from '../../lib/crypto.js';
import { withServiceRole } from '../../lib/db.js';

export interface SandboxBinding {
  orgId: string;
  agentId: string;
  connectionId: string;
  sandboxUrl: string;
  accessToken: string;
  webhookSecret: string;
  keyring: Keyring;
  /** Seconds the agent waits after the lead's last message (the team's response delay). */
  responseDelaySeconds: number;
}

/** The API's webhook URL for the sandbox connection, as an admin would paste it into Kommo. */
export const sandboxWebhookUrl = (apiUrl: string, b: Pick<SandboxBinding, 'connectionId' | 'webhookSecret'>): string =>
  `${apiUrl}/v1/webhooks/crm/kommo/${b.connectionId}?secret=${encodeURIComponent(b.webhookSecret)}`;

export async function bindSandboxCrm(admin: pg.Pool, b: SandboxBinding): Promise<void> {
  await withServiceRole(admin, async (tx) => {
    await tx.query(
      `insert into public.crm_connections (id, org_id, provider, name, auth_kind, status, api_base_url, webhook_secret_hash)
       values ($1, $2, 'kommo', 'Sandbox CRM (Kommo fake)', 'token', 'active', $3, $4)
       on conflict (id) do update set api_base_url = excluded.api_base_url, webhook_secret_hash = excluded.webhook_secret_hash, status = 'active', last_error = null`,
      [b.connectionId, b.orgId, b.sandboxUrl, sha256Hex(b.webhookSecret)],
    );
    await storeTokens(tx, b.keyring, { orgId: b.orgId, connectionId: b.connectionId }, { accessToken: b.accessToken, refreshToken: null, expiresAt: null });
    await tx.query(
      `update public.agents set crm_connection_id = $3, triggers = $4::jsonb, response_delay_seconds = $5
        where id = $1 and org_id = $2`,
      [b.agentId, b.orgId, b.connectionId, JSON.stringify([{ event: 'incoming_message' }]), b.responseDelaySeconds],
    );
  });
}
