import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InjectedFailure } from '../../scripts/stack/crm-fakes/common.js';
import { seedOrg, startFullTestApp, type FullTestApp, type SeededOrg } from '../support/full-app.js';

/**
 * Unsafe consumption of the CRM APIs, seen from our API: whatever the CRM answers (HTML, broken
 * JSON, the wrong shape, nothing in time, an error page), the caller gets a typed answer, never
 * a 5xx, and only validated, typed fields reach the database.
 */
describe('unsafe consumption: hostile CRM answers never become a 5xx or unvalidated rows', () => {
  let full: FullTestApp;
  let org: SeededOrg;

  beforeAll(async () => {
    full = await startFullTestApp({ crmSettings: (base) => ({ ...base, timeoutMs: 400 }) });
    org = await seedOrg(full, 'unsafe');
  });
  afterAll(async () => {
    await full?.close();
  });

  const cases: Array<[string, InjectedFailure, string]> = [
    ['an HTML page with 200', { status: 200, body: '<html><body>Login</body></html>' }, 'crm-invalid-response'],
    ['broken JSON with 200', { status: 200, body: '{"portalId": 1, ', headers: { 'content-type': 'application/json' } }, 'crm-invalid-response'],
    ['JSON of the wrong shape', { status: 200, body: { portalId: { $gt: '' }, hack: '<script>' } }, 'crm-invalid-response'],
    ['an HTML 502 page', { status: 502, body: '<html>Bad gateway</html>' }, 'crm-unavailable'],
    ['nothing within the timeout', { status: 200, body: { portalId: 1 }, delayMs: 1_500 }, 'crm-unavailable'],
    ['a 429 without Retry-After', { status: 429, body: { message: 'slow down' } }, 'crm-rate-limited'],
  ];

  for (const [what, failure, type] of cases) {
    it(`${what}: the connection test answers 200 ok:false with ${type}, and stores only the typed error`, async () => {
      full.hubspot.injectFailure({ ...failure, times: 1 });
      const res = await full.app.inject({
        method: 'POST',
        url: `/v1/orgs/${org.orgId}/crm/connections/${org.ids.connectionId}/test`,
        headers: { authorization: `Bearer ${org.adminToken}` },
      });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toMatchObject({ ok: false, accountId: null, error: { type } });
      expect(res.body).not.toMatch(/<html|<script|\$gt/);
      const { rows } = await full.admin.query<{ status: string; external_account_id: string | null; last_error: { type: string; message: string } }>(
        `select status, external_account_id, last_error from public.crm_connections where id = $1`,
        [org.ids.connectionId],
      );
      expect(rows[0]!.status).toBe('error');
      expect(rows[0]!.last_error.type).toBe(type);
      expect(JSON.stringify(rows[0])).not.toMatch(/<html|<script|\$gt/);
      // And the connection reads back cleanly.
      const got = await full.app.inject({ method: 'GET', url: `/v1/orgs/${org.orgId}/crm/connections/${org.ids.connectionId}`, headers: { authorization: `Bearer ${org.adminToken}` } });
      expect(got.statusCode).toBe(200);
    });
  }

  it('recovers once the CRM answers properly again', async () => {
    const res = await full.app.inject({
      method: 'POST',
      url: `/v1/orgs/${org.orgId}/crm/connections/${org.ids.connectionId}/test`,
      headers: { authorization: `Bearer ${org.adminToken}` },
    });
    expect(res.json()).toMatchObject({ ok: true, accountId: String(full.hubspot.portalId), error: null });
  });
});
