import { ScheduleNotFoundError } from '@temporalio/client';
import { ConnectionUnavailableError, storeTokens } from '../../../integrations/crm/credentials.js';
import { CrmError } from '../../../integrations/crm/http.js';
import { hubspotAuthorizeUrl, HUBSPOT_SCOPES } from '../../../integrations/crm/hubspot.js';
import { kommoAuthorizeUrl } from '../../../integrations/crm/kommo.js';
import type { CrmProvider } from '../../../integrations/crm/types.js';
import { randomToken, sha256Hex } from '../../../lib/crypto.js';
import { withPrincipal } from '../../../lib/db.js';
import type { Principal } from '../../../lib/principal.js';
import { crmSyncScheduleId } from '../../../workflows/crm-sync-ids.js';
import { ProblemError } from '../../problems.js';
import { requireOrgRole } from '../org-access.js';
import { callTemporal } from '../temporal-calls.js';
import { OAUTH_STATE_TTL_MINUTES } from './oauth.js';
import { toView, type ConnectionRow, type ConnectionView, type CrmContext, columns } from './shared.js';

export type CreateConnectionInput = {
  provider: CrmProvider;
  name: string;
  auth: { kind: 'oauth' } | { kind: 'token'; token: string; accountUrl?: string | undefined };
};

export interface CreatedConnection {
  connection: ConnectionView;
  /** OAuth: where to send the admin's browser. */
  authorizeUrl: string | null;
  /** Shown once: the URL to configure in the CRM's webhook settings (Kommo's carries our secret). */
  webhookUrl: string;
}

export function createConnectionOps(ctx: CrmContext) {
  const { pool, temporal, keyring, settings, temporalDeadlineMs, credentials, getRow, assertCustomerUrl } = ctx;

  function webhookUrl(provider: CrmProvider, connectionId: string, secret: string | null): string {
    const base = settings.publicUrl ?? 'http://127.0.0.1:3000';
    const url = new URL(`/v1/webhooks/crm/${provider}/${connectionId}`, base);
    if (secret) url.searchParams.set('secret', secret);
    return url.toString();
  }

  /** `browserBinding`: the OAuth binding cookie of the admin's browser (oauth-binding.ts); required for OAuth. */
  async function create(principal: Principal, orgId: string, input: CreateConnectionInput, opts: { browserBinding?: string } = {}): Promise<CreatedConnection> {
    if (input.auth.kind === 'oauth' && !settings[input.provider].app) {
      throw new ProblemError('validation-error', `OAuth for ${input.provider} is not configured on this server; connect with a token instead.`);
    }
    if (input.provider === 'kommo' && input.auth.kind === 'token' && !input.auth.accountUrl) {
      throw new ProblemError('validation-error', 'A Kommo long-lived token needs accountUrl (https://<subdomain>.kommo.com).', [{ path: 'body.auth.accountUrl', message: 'is required for Kommo' }]);
    }
    const apiBaseUrl = input.auth.kind === 'token' && input.provider === 'kommo' ? await kommoBaseUrl(input.auth.accountUrl!) : input.provider === 'hubspot' ? settings.hubspot.apiBaseUrl : null;
    const webhookSecret = input.provider === 'kommo' ? randomToken(24) : null;
    const state = input.auth.kind === 'oauth' ? randomToken(32) : null;
    const connection = await withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      const { rows } = await tx.query<ConnectionRow>(
        `insert into public.crm_connections (org_id, provider, name, auth_kind, status, api_base_url, webhook_secret_hash, created_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning ${columns}`,
        [
          orgId,
          input.provider,
          input.name,
          input.auth.kind,
          input.auth.kind === 'token' ? 'active' : 'pending',
          apiBaseUrl,
          webhookSecret ? sha256Hex(webhookSecret) : null,
          principal.kind === 'user' ? principal.userId : null,
        ],
      );
      const row = rows[0]!;
      if (input.auth.kind === 'token') {
        await storeTokens(tx, keyring, { orgId, connectionId: row.id }, { accessToken: input.auth.token, refreshToken: null, expiresAt: null });
      }
      if (state) {
        await tx.query(
          `insert into public.oauth_states (state_hash, org_id, connection_id, created_by, expires_at, browser_binding_hash)
           values ($1, $2, $3, $4, now() + make_interval(mins => $5), $6)`,
          [sha256Hex(state), orgId, row.id, principal.kind === 'user' ? principal.userId : null, OAUTH_STATE_TTL_MINUTES, opts.browserBinding ? sha256Hex(opts.browserBinding) : null],
        );
      }
      return toView(row);
    });
    let authorizeUrl: string | null = null;
    if (state) {
      authorizeUrl =
        input.provider === 'kommo'
          ? kommoAuthorizeUrl({ authorizeUrl: settings.kommo.authorizeUrl, clientId: settings.kommo.app!.clientId, state })
          : hubspotAuthorizeUrl({ authorizeUrl: settings.hubspot.authorizeUrl, clientId: settings.hubspot.app!.clientId, redirectUri: settings.hubspot.app!.redirectUri, state, scopes: HUBSPOT_SCOPES });
    }
    return { connection, authorizeUrl, webhookUrl: webhookUrl(input.provider, connection.id, webhookSecret) };
  }

  async function kommoBaseUrl(accountUrl: string): Promise<string> {
    let url: URL;
    try {
      url = new URL(accountUrl);
    } catch {
      throw new ProblemError('validation-error', 'accountUrl must be a URL like https://example.kommo.com');
    }
    if (url.protocol !== `${settings.kommo.scheme}:` || !settings.kommo.accountHostPattern.test(url.host)) {
      throw new ProblemError('validation-error', 'accountUrl must be your Kommo or amoCRM account address, like https://example.kommo.com', [{ path: 'body.auth.accountUrl', message: 'is not a Kommo account host' }]);
    }
    await assertCustomerUrl(url.toString(), 'body.auth.accountUrl');
    return `${url.protocol}//${url.host}`;
  }

  async function list(principal: Principal, orgId: string): Promise<ConnectionView[]> {
    return withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'member');
      const { rows } = await tx.query<ConnectionRow>(`select ${columns} from public.crm_connections where org_id = $1 order by created_at, id limit 200`, [orgId]);
      return rows.map(toView);
    });
  }

  async function get(principal: Principal, orgId: string, connectionId: string): Promise<ConnectionView> {
    return withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'member');
      return toView(await getRow(tx, orgId, connectionId));
    });
  }

  async function rename(principal: Principal, orgId: string, connectionId: string, patch: { name?: string | undefined }): Promise<ConnectionView> {
    return withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      await getRow(tx, orgId, connectionId);
      const { rows } = await tx.query<ConnectionRow>(
        `update public.crm_connections set name = coalesce($3, name) where id = $1 and org_id = $2 returning ${columns}`,
        [connectionId, orgId, patch.name ?? null],
      );
      return toView(rows[0]!);
    });
  }

  /**
   * Deletes the Temporal schedule, then the row, each on its own: no transaction is open while
   * Temporal is called. The schedule goes first: if deleting it fails, the connection (and its
   * credentials) stay and the admin can retry, instead of a schedule that fires for a connection
   * that is gone. A crash between the two leaves a connection without a schedule, which a
   * retried DELETE finishes.
   */
  async function remove(principal: Principal, orgId: string, connectionId: string): Promise<void> {
    await withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      await getRow(tx, orgId, connectionId);
    });
    await callTemporal(
      temporal,
      temporalDeadlineMs,
      async () => {
        try {
          await temporal.schedule.getHandle(crmSyncScheduleId(connectionId)).delete();
        } catch (err) {
          if (!(err instanceof ScheduleNotFoundError)) throw err;
        }
      },
      'Temporal did not answer in time; the connection was not deleted. Retry.',
    );
    await withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      // Credentials, states, records, runs and checkpoints go with the row (on delete cascade).
      // Deleted by a concurrent request meanwhile: the outcome the caller asked for (the audit
      // trigger records only the deletion that happened).
      await tx.query(`delete from public.crm_connections where id = $1 and org_id = $2`, [connectionId, orgId]);
    });
  }

  async function test(principal: Principal, orgId: string, connectionId: string): Promise<{ ok: boolean; accountId: string | null; error: { type: string; message: string } | null }> {
    await withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      await getRow(tx, orgId, connectionId);
    });
    let result: { ok: boolean; accountId: string | null; error: { type: string; message: string } | null };
    try {
      const { adapter } = await credentials.open({ orgId, connectionId }, { principal, governed: false, requireActive: false });
      const { accountId } = await adapter.whoAmI();
      result = { ok: true, accountId, error: null };
    } catch (err) {
      if (err instanceof ConnectionUnavailableError) result = { ok: false, accountId: null, error: { type: err.reason, message: err.message } };
      else if (err instanceof CrmError) result = { ok: false, accountId: null, error: { type: `crm-${err.kind}`, message: err.message } };
      else throw err;
    }
    await withPrincipal(pool, principal, (tx) =>
      tx.query(
        `update public.crm_connections
            set status = case when $3 then 'active' when status = 'pending' then 'pending' else 'error' end,
                external_account_id = coalesce($4, external_account_id), last_error = $5
          where id = $1 and org_id = $2`,
        [connectionId, orgId, result.ok, result.accountId, result.error ? JSON.stringify(result.error) : null],
      ),
    );
    return result;
  }

  return { create, list, get, rename, remove, test };
}
