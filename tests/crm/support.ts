import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import type pg from 'pg';
import { CredentialStore, storeTokens } from '../../integrations/crm/credentials.js';
import { RateGovernor, type RateBudget } from '../../integrations/crm/governor.js';
import type { CrmSettings } from '../../integrations/crm/settings.js';
import type { CrmProvider, TokenSet } from '../../integrations/crm/types.js';
import { generateKeySpec, parseKeyring, sha256Hex, type Keyring } from '../../lib/crypto.js';
import { withServiceRole } from '../../lib/db.js';
import type { FakeHubspot } from '../fakes/hubspot-server.js';
import type { FakeKommo } from '../../scripts/stack/crm-fakes/kommo.js';

/** Passed to child worker processes (CRM_TEST_KEY_SPEC) so they decrypt what this process stored. */
export const testKeySpec: string = process.env.CRM_TEST_KEY_SPEC ?? generateKeySpec('test1');
export const testKeyring: Keyring = parseKeyring(testKeySpec);

export function crmSettingsFor(fakes: { kommo?: FakeKommo; hubspot?: FakeHubspot }): CrmSettings {
  return {
    timeoutMs: 5_000,
    kommo: {
      ...(fakes.kommo ? { app: { clientId: fakes.kommo.clientId, clientSecret: fakes.kommo.clientSecret, redirectUri: 'http://127.0.0.1/v1/crm/oauth/callback/kommo' } } : {}),
      authorizeUrl: fakes.kommo ? `${fakes.kommo.url}/oauth` : 'https://www.kommo.com/oauth',
      accountHostPattern: /^127\.0\.0\.1:\d+$/,
      scheme: 'http',
    },
    hubspot: {
      ...(fakes.hubspot ? { app: { clientId: fakes.hubspot.clientId, clientSecret: fakes.hubspot.clientSecret, redirectUri: 'http://127.0.0.1/v1/crm/oauth/callback/hubspot' } } : {}),
      authorizeUrl: fakes.hubspot ? `${fakes.hubspot.url}/oauth/authorize` : 'https://app.hubspot.com/oauth/authorize',
      apiBaseUrl: fakes.hubspot?.url ?? 'https://api.hubapi.com',
    },
    publicUrl: 'https://api.example.test',
    // The fakes listen on loopback, which the SSRF guard refuses for everyone else.
    ssrf: { allowedHosts: ['127.0.0.1'] },
  };
}

export const fastBudget: RateBudget = { capacity: 1000, refillPerSecond: 1000 };

export function testCredentialStore(pool: pg.Pool, settings: CrmSettings, budgets: Partial<Record<CrmProvider, RateBudget>> = { kommo: fastBudget, hubspot: fastBudget }) {
  return new CredentialStore({ pool, keyring: testKeyring, settings, governor: new RateGovernor(pool, { budgets }) });
}

/** An active connection of `orgId` with stored (encrypted) tokens, written as the service role. */
export async function createCrmConnection(
  admin: pg.Pool,
  orgId: string,
  opts: { provider: CrmProvider; apiBaseUrl: string; tokens: TokenSet; authKind?: 'oauth' | 'token'; webhookSecretHash?: string },
): Promise<string> {
  const connectionId = randomUUID();
  await withServiceRole(admin, async (tx) => {
    await tx.query(
      `insert into public.crm_connections (id, org_id, provider, name, auth_kind, status, api_base_url, webhook_secret_hash)
       values ($1, $2, $3, 'Test CRM', $4, 'active', $5, $6)`,
      [connectionId, orgId, opts.provider, opts.authKind ?? 'oauth', opts.apiBaseUrl, opts.webhookSecretHash ?? null],
    );
    await storeTokens(tx, testKeyring, { orgId, connectionId }, opts.tokens);
  });
  return connectionId;
}

/**
 * Waits until the intake workflow has processed every recorded webhook delivery of the
 * connection (webhooks answer before processing, so tests assert on effects after this).
 */
export async function intakeSettled(admin: pg.Pool, connectionId: string, timeoutMs = 30_000): Promise<void> {
  await expect
    .poll(
      async () => (await admin.query<{ n: number }>(`select count(*)::int as n from public.crm_webhook_deliveries where connection_id = $1 and processed_at is null`, [connectionId])).rows[0]!.n,
      { timeout: timeoutMs, interval: 50 },
    )
    .toBe(0);
}

/**
 * A Kommo connection of `orgId` on the fake, authorised by a fresh long-lived token and
 * receiving webhooks under a fresh secret: what a team has after connecting Kommo by token.
 * `webhookPath` is where Kommo posts the account's webhooks.
 */
export async function connectKommoByToken(admin: pg.Pool, orgId: string, kommo: FakeKommo): Promise<{ connectionId: string; secret: string; webhookPath: string }> {
  const token = `kommo-${randomUUID()}`;
  const secret = `kommo-secret-${randomUUID()}`;
  kommo.addLongLivedToken(token);
  const connectionId = await createCrmConnection(admin, orgId, {
    provider: 'kommo',
    apiBaseUrl: kommo.url,
    authKind: 'token',
    tokens: { accessToken: token, refreshToken: null, expiresAt: null },
    webhookSecretHash: sha256Hex(secret),
  });
  return { connectionId, secret, webhookPath: `/v1/webhooks/crm/kommo/${connectionId}?secret=${secret}` };
}
