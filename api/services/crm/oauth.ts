import { loadConnection, storeTokens } from '../../../integrations/crm/credentials.js';
import { CrmError } from '../../../integrations/crm/http.js';
import { requestToken } from '../../../integrations/crm/settings.js';
import type { CrmProvider } from '../../../integrations/crm/types.js';
import { sha256Hex } from '../../../lib/crypto.js';
import { withPrincipal } from '../../../lib/db.js';
import type { Principal } from '../../../lib/principal.js';
import { ProblemError } from '../../problems.js';
import { columns, toView, type ConnectionRow, type ConnectionView, type CrmContext } from './shared.js';

export const OAUTH_STATE_TTL_MINUTES = 15;

export function createOAuthOps(ctx: CrmContext) {
  const { pool, keyring, settings, assertCustomerUrl } = ctx;

  /**
   * The OAuth redirect target. Unauthenticated: the single-use `state` proves the flow was
   * started by an admin of the org, and only then does the request act, as that org's worker.
   */
  async function completeOAuth(
    provider: CrmProvider,
    query: { code: string; state: string; referer?: string | undefined },
    browserBinding: string | undefined,
  ): Promise<ConnectionView> {
    const { rows } = await pool.query<{ org_id: string; connection_id: string; expired: boolean; browser_binding_hash: string | null }>(
      `select org_id, connection_id, expired, browser_binding_hash from private.take_crm_oauth_state($1)`,
      [sha256Hex(query.state)],
    );
    const taken = rows[0];
    if (!taken || taken.expired) throw new ProblemError('validation-error', 'The authorization link is invalid or has expired; start connecting again.');
    // Only the browser that started the flow may finish it (oauth-binding.ts): otherwise anyone
    // lured to an admin's authorize link would link their CRM into that admin's org.
    if (!taken.browser_binding_hash || !browserBinding || sha256Hex(browserBinding) !== taken.browser_binding_hash) {
      throw new ProblemError('validation-error', 'This authorization was started in another browser session; start connecting again from the console.');
    }
    const worker: Principal = { kind: 'worker', orgId: taken.org_id };
    const info = await withPrincipal(pool, worker, (tx) => loadConnection(tx, taken.org_id, taken.connection_id));
    if (!info || info.provider !== provider) throw new ProblemError('validation-error', 'The authorization does not belong to a connection of this provider.');
    let apiBaseUrl = info.apiBaseUrl;
    if (provider === 'kommo') {
      // Kommo names the account host in `referer`; never call a host outside Kommo's domains.
      if (!query.referer || !settings.kommo.accountHostPattern.test(query.referer)) throw new ProblemError('validation-error', 'The callback did not name a Kommo account host.');
      apiBaseUrl = `${settings.kommo.scheme}://${query.referer}`;
      await assertCustomerUrl(apiBaseUrl, 'querystring.referer');
    }
    let tokens;
    try {
      tokens = await requestToken(settings, { provider, apiBaseUrl }, { kind: 'authorization_code', code: query.code });
    } catch (err) {
      if (err instanceof CrmError && !err.retryable) throw new ProblemError('validation-error', `The CRM refused the authorization code: ${err.message}`);
      throw new ProblemError('service-unavailable', 'The CRM did not answer; try connecting again.');
    }
    return withPrincipal(pool, worker, async (tx) => {
      await storeTokens(tx, keyring, { orgId: taken.org_id, connectionId: taken.connection_id }, tokens);
      const { rows: updated } = await tx.query<ConnectionRow>(
        `update public.crm_connections set status = 'active', last_error = null, api_base_url = $3, external_account_id = coalesce($4, external_account_id)
          where id = $1 and org_id = $2 returning ${columns}`,
        [taken.connection_id, taken.org_id, apiBaseUrl, tokens.accountId ?? query.referer ?? null],
      );
      return toView(updated[0]!);
    });
  }

  return { completeOAuth };
}
