/**
 * Provider apps and the adapter factory: the one place that turns "provider + base URL + a way
 * to get a token" into a CrmAdapter, and that knows each provider's OAuth app.
 */
import { HubspotAdapter, hubspotTokenRequest } from './hubspot.js';
import type { CrmRequestHooks } from './http.js';
import { KommoAdapter, kommoTokenRequest } from './kommo.js';
import type { CrmAdapter, CrmProvider, OAuthApp, TokenGrant, TokenSet } from './types.js';
import { createGuardedFetch, type GuardedFetch, type SsrfPolicy } from '../../lib/ssrf.js';

export interface CrmSettings {
  timeoutMs: number;
  kommo: {
    app?: OAuthApp;
    authorizeUrl: string;
    /** Which `referer` hosts the OAuth callback accepts (guards against SSRF through the callback). */
    accountHostPattern: RegExp;
    /** `https` in production; the fakes in tests speak plain HTTP on loopback. */
    scheme: 'https' | 'http';
  };
  hubspot: {
    app?: OAuthApp;
    authorizeUrl: string;
    apiBaseUrl: string;
  };
  /** Public origin of the API, for webhook URLs and HubSpot signature checks. */
  publicUrl?: string;
  /** SSRF allowlist for customer-derived base URLs (Kommo accounts); empty in production. */
  ssrf?: SsrfPolicy;
}

export const KOMMO_ACCOUNT_HOSTS = /^[a-z0-9-]{1,63}\.(kommo\.com|amocrm\.ru|amocrm\.com)$/;

interface CrmEnv {
  CRM_HTTP_TIMEOUT_MS: number;
  KOMMO_CLIENT_ID?: string | undefined;
  KOMMO_CLIENT_SECRET?: string | undefined;
  KOMMO_REDIRECT_URI?: string | undefined;
  KOMMO_AUTHORIZE_URL: string;
  HUBSPOT_CLIENT_ID?: string | undefined;
  HUBSPOT_CLIENT_SECRET?: string | undefined;
  HUBSPOT_REDIRECT_URI?: string | undefined;
  HUBSPOT_AUTHORIZE_URL: string;
  HUBSPOT_API_BASE_URL: string;
  API_PUBLIC_URL?: string | undefined;
  SSRF_ALLOWED_HOSTS?: readonly string[] | undefined;
}

function app(id?: string, secret?: string, redirectUri?: string): OAuthApp | undefined {
  return id && secret && redirectUri ? { clientId: id, clientSecret: secret, redirectUri } : undefined;
}

export function crmSettingsFromConfig(env: CrmEnv): CrmSettings {
  const kommo = app(env.KOMMO_CLIENT_ID, env.KOMMO_CLIENT_SECRET, env.KOMMO_REDIRECT_URI);
  const hubspot = app(env.HUBSPOT_CLIENT_ID, env.HUBSPOT_CLIENT_SECRET, env.HUBSPOT_REDIRECT_URI);
  return {
    timeoutMs: env.CRM_HTTP_TIMEOUT_MS,
    kommo: { ...(kommo ? { app: kommo } : {}), authorizeUrl: env.KOMMO_AUTHORIZE_URL, accountHostPattern: KOMMO_ACCOUNT_HOSTS, scheme: 'https' },
    hubspot: { ...(hubspot ? { app: hubspot } : {}), authorizeUrl: env.HUBSPOT_AUTHORIZE_URL, apiBaseUrl: env.HUBSPOT_API_BASE_URL },
    ...(env.API_PUBLIC_URL ? { publicUrl: env.API_PUBLIC_URL } : {}),
    ...(env.SSRF_ALLOWED_HOSTS?.length ? { ssrf: { allowedHosts: env.SSRF_ALLOWED_HOSTS } } : {}),
  };
}

const guardedFetches = new Map<string, GuardedFetch>();

/**
 * The fetch for hosts a customer chose (a Kommo account is named by the customer, and by the
 * OAuth callback's `referer`): every connection and redirect is checked against internal
 * addresses, whatever DNS answers later. One per allowlist, shared for the process.
 */
export function customerUrlFetch(policy: SsrfPolicy = {}): typeof fetch {
  const id = JSON.stringify(policy.allowedHosts ?? []);
  let guarded = guardedFetches.get(id);
  if (!guarded) {
    guarded = createGuardedFetch(policy);
    guardedFetches.set(id, guarded);
  }
  return guarded as unknown as typeof fetch;
}

export function createAdapter(
  settings: CrmSettings,
  connection: { provider: CrmProvider; apiBaseUrl: string | null },
  accessToken: () => Promise<string>,
  hooks: CrmRequestHooks = {},
  fetchImpl?: typeof fetch,
): CrmAdapter {
  const common = { accessToken, timeoutMs: settings.timeoutMs, ...hooks, ...(fetchImpl ? { fetch: fetchImpl } : {}) };
  if (connection.provider === 'kommo') {
    if (!connection.apiBaseUrl) throw new Error('a Kommo connection needs its account URL');
    return new KommoAdapter({ baseUrl: connection.apiBaseUrl, ...common, fetch: fetchImpl ?? customerUrlFetch(settings.ssrf) });
  }
  // HubSpot's host is ours to configure, not a customer's, but every outbound call goes through
  // the same guard: a misconfigured or stored base URL must not reach an internal address either.
  return new HubspotAdapter({ baseUrl: connection.apiBaseUrl ?? settings.hubspot.apiBaseUrl, ...common, fetch: fetchImpl ?? customerUrlFetch(settings.ssrf) });
}


export function requestToken(settings: CrmSettings, connection: { provider: CrmProvider; apiBaseUrl: string | null }, grant: TokenGrant): Promise<TokenSet> {
  if (connection.provider === 'kommo') {
    const kommoApp = settings.kommo.app;
    if (!kommoApp || !connection.apiBaseUrl) throw new Error('the Kommo OAuth app is not configured (KOMMO_CLIENT_ID, KOMMO_CLIENT_SECRET, KOMMO_REDIRECT_URI)');
    return kommoTokenRequest({ baseUrl: connection.apiBaseUrl, app: kommoApp, timeoutMs: settings.timeoutMs, fetch: customerUrlFetch(settings.ssrf) }, grant);
  }
  const hubspotApp = settings.hubspot.app;
  if (!hubspotApp) throw new Error('the HubSpot OAuth app is not configured (HUBSPOT_CLIENT_ID, HUBSPOT_CLIENT_SECRET, HUBSPOT_REDIRECT_URI)');
  return hubspotTokenRequest({ baseUrl: connection.apiBaseUrl ?? settings.hubspot.apiBaseUrl, app: hubspotApp, timeoutMs: settings.timeoutMs, fetch: customerUrlFetch(settings.ssrf) }, grant);
}
