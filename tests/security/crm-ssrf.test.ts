import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdapter } from '../../integrations/crm/settings.js';
import { createCrmConnection } from '../crm/support.js';
import { seedOrg, startFullTestApp, type FullTestApp, type SeededOrg } from '../support/full-app.js';

/**
 * The SSRF guard wired into the CRM integration, the one place a customer names a host we call
 * (a Kommo account URL at connect time, the `referer` of the OAuth callback). The host pattern
 * is opened up here on purpose, so the guard itself, not the pattern, has to refuse.
 */
const INTERNAL = [
  'http://127.0.0.1',
  'http://localhost',
  'http://10.0.0.1',
  'http://172.16.5.4',
  'http://192.168.1.1',
  'http://100.64.0.1',
  'http://169.254.169.254',
  'http://0.0.0.0',
  'http://[::1]',
  'http://[::ffff:127.0.0.1]',
  'http://[::ffff:a9fe:a9fe]',
  'http://[fe80::1]',
  'http://[fd00::1]',
  'http://2130706433',
  'http://0177.0.0.1',
  'http://0x7f.0.0.1',
  'http://127.1',
  'http://017700000001',
];

describe('SSRF guard on CRM URLs, at save and at fetch', () => {
  let full: FullTestApp;
  let org: SeededOrg;

  beforeAll(async () => {
    full = await startFullTestApp({
      // Any host passes the Kommo pattern and nothing is allowlisted except the fake's own port
      // (host:port), so a hop to any other loopback port is internal and refused.
      crmSettings: (base) => ({ ...base, kommo: { ...base.kommo, accountHostPattern: /^.+$/ }, ssrf: { allowedHosts: [] } }),
    });
    org = await seedOrg(full, 'ssrf');
  });
  afterAll(async () => {
    await full?.close();
  });

  const connect = (accountUrl: string) =>
    full.app.inject({
      method: 'POST',
      url: `/v1/orgs/${org.orgId}/crm/connections`,
      headers: { authorization: `Bearer ${org.adminToken}` },
      payload: { provider: 'kommo', name: 'Kommo', auth: { kind: 'token', token: 'long-lived-token-0123456789', accountUrl } },
    });

  it('refuses every internal address form as a Kommo account URL with a 400 that says why, and stores nothing', async () => {
    const before = await full.admin.query(`select count(*)::int as n from public.crm_connections where org_id = $1`, [org.orgId]);
    for (const url of INTERNAL) {
      const res = await connect(url);
      expect(res.statusCode, `${url}: ${res.body}`).toBe(400);
      expect(res.json()).toMatchObject({ type: 'https://gpt-agent-platform.dev/problems/validation-error', errors: [{ path: 'body.auth.accountUrl' }] });
      expect(res.json().detail, url).toMatch(/internal network address|does not resolve/);
    }
    const after = await full.admin.query(`select count(*)::int as n from public.crm_connections where org_id = $1`, [org.orgId]);
    expect(after.rows).toEqual(before.rows);
    expect(full.kommo.requests).toEqual([]);
  });

  it('refuses an OAuth callback whose referer names an internal host, before any token request', async () => {
    const created = await full.app.inject({
      method: 'POST',
      url: `/v1/orgs/${org.orgId}/crm/connections`,
      headers: { authorization: `Bearer ${org.adminToken}` },
      payload: { provider: 'kommo', name: 'Kommo OAuth', auth: { kind: 'oauth' } },
    });
    expect(created.statusCode).toBe(201);
    const state = new URL(created.json().authorizeUrl).searchParams.get('state')!;
    const cookie = String(created.headers['set-cookie']).split(';')[0]!;
    const res = await full.app.inject({ method: 'GET', url: `/v1/crm/oauth/callback/kommo?code=abc&state=${state}&referer=${encodeURIComponent(full.kommo.referer)}`, headers: { cookie } });
    expect(res.statusCode).toBe(400);
    expect(res.json().detail).toMatch(/internal network address/);
    expect(full.kommo.requests).toEqual([]);
    const { rows } = await full.admin.query(`select status from public.crm_connections where id = $1`, [created.json().connection.id]);
    expect(rows).toEqual([{ status: 'pending' }]);
  });

  it('refuses at fetch time a stored base URL that is internal: the test call fails as forbidden and the host is never contacted', async () => {
    // As if saved before the guard, or a name that resolved publicly then and internally now.
    const connectionId = await createCrmConnection(full.admin, org.orgId, {
      provider: 'kommo',
      apiBaseUrl: full.kommo.url,
      tokens: { accessToken: 'stored-token', refreshToken: null, expiresAt: null },
    });
    const res = await full.app.inject({ method: 'POST', url: `/v1/orgs/${org.orgId}/crm/connections/${connectionId}/test`, headers: { authorization: `Bearer ${org.adminToken}` } });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ ok: false, error: { type: 'crm-forbidden', message: expect.stringMatching(/internal network address/) } });
    expect(full.kommo.requests).toEqual([]);
  });
});

describe('SSRF guard at fetch time: redirects', () => {
  let full: FullTestApp;

  beforeAll(async () => {
    full = await startFullTestApp();
  });
  afterAll(async () => {
    await full?.close();
  });

  it('re-checks a redirect from the CRM host to an internal address and never follows it', async () => {
    // Only the fake Kommo itself (host:port) is allowlisted; the HubSpot fake on another loopback port is not.
    const { hubspot, kommo } = full;
    const settings = { ...full.settings, ssrf: { allowedHosts: [new URL(kommo.url).host] } };
    const adapter = createAdapter(settings, { provider: 'kommo', apiBaseUrl: kommo.url }, async () => 'token');
    kommo.injectFailure({ status: 302, headers: { location: `${hubspot.url}/crm/v3/objects/deals` } });
    const before = hubspot.requests.length;
    await expect(adapter.whoAmI()).rejects.toMatchObject({ name: 'CrmError', kind: 'forbidden', retryable: false });
    expect(hubspot.requests.length).toBe(before);
    expect(kommo.requests.length).toBe(1);
  });

  it('guards the HubSpot adapter like every other outbound call: an internal base URL is refused and never contacted', async () => {
    const { hubspot } = full;
    // Nothing allowlisted: the fake HubSpot on loopback is an internal address.
    const settings = { ...full.settings, ssrf: { allowedHosts: [] } };
    const adapter = createAdapter(settings, { provider: 'hubspot', apiBaseUrl: hubspot.url }, async () => 'token');
    const before = hubspot.requests.length;
    await expect(adapter.whoAmI()).rejects.toMatchObject({ name: 'CrmError', kind: 'forbidden', retryable: false });
    expect(hubspot.requests.length).toBe(before);
  });
});
