/**
 * The CRM screen in a real Chromium against the real stack (tests/support/console-browser.ts):
 * the API serving the built console, Postgres, Temporal with the crm-sync worker, and the fake
 * Kommo and HubSpot servers speaking their wire protocols.
 *
 * An owner connects HubSpot with a private-app token, tests it, edits its schedule (seeing the
 * API's problem for a bad time zone), starts a sync and watches it run and finish without
 * reloading (the CRM answers one page with a 503 first, so the sync is visibly running), sees a
 * webhook delivery get processed, and saves messaging settings; then connects Kommo and HubSpot
 * through OAuth: the console links to the CRM's consent page, which sends the browser back
 * through the API's callback to the CRM screen with the connection active.
 */
import { randomUUID } from 'node:crypto';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { chromiumMissing, useConsoleBrowser } from '../support/console-browser.js';

describe('console CRM screen (real browser, real stack)', () => {
  if (chromiumMissing()) return;
  const stack = useConsoleBrowser({ label: 'console-crm' });
  const tag = randomUUID().slice(0, 8);
  const owner = { email: `crm-owner-${tag}@example.test`, password: 'crm-owner-password-1' };
  let orgId = '';
  let page: Page;

  async function openCrm() {
    await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'CRM' }).click();
    await page.getByRole('heading', { name: 'CRM connections', exact: true }).waitFor();
  }

  it('connects HubSpot by token, tests it, schedules it, follows a sync live to the end, shows a processed webhook and saves messaging settings', async () => {
    const context = await stack.newContext();
    page = await context.newPage();
    await page.goto(stack.base);
    await stack.signUp(page, owner);
    await page.getByRole('heading', { name: 'New organization', exact: true }).waitFor();
    await page.getByLabel('Name').fill(`CRM team ${tag}`);
    await page.getByRole('button', { name: 'Create organization' }).click();
    await page.getByRole('heading', { name: 'Agents', exact: true }).waitFor();
    orgId = /#\/orgs\/([0-9a-f-]{36})\//.exec(page.url())![1]!;
    await openCrm();
    await page.getByText('No CRM connected yet.').waitFor();
    await stack.expectAccessible(page, 'CRM screen, empty');

    const token = `pat-na1-${randomUUID()}`;
    stack.full.hubspot.addPrivateAppToken(token);
    const connectForm = page.getByRole('form', { name: 'Connect a CRM' });
    await connectForm.getByLabel('Name').fill('HubSpot main');
    await connectForm.getByLabel('CRM').selectOption('hubspot');
    await connectForm.getByLabel('How').selectOption('token');
    await connectForm.getByLabel('Token', { exact: true }).fill(token);
    await connectForm.getByRole('button', { name: 'Connect', exact: true }).click();
    const card = page.getByRole('article', { name: 'Connection HubSpot main' });
    await card.waitFor();
    await page.getByText('“HubSpot main” is connected.').waitFor();
    const webhookUrl = await page.locator('.notice code').textContent();
    const { rows: connections } = await stack.full.admin.query<{ id: string; status: string; auth_kind: string }>(
      `select id, status, auth_kind from public.crm_connections where org_id = $1 and provider = 'hubspot'`,
      [orgId],
    );
    expect(connections).toMatchObject([{ status: 'active', auth_kind: 'token' }]);
    const connectionId = connections[0]!.id;
    expect(webhookUrl).toContain(`/v1/webhooks/crm/hubspot/${connectionId}`);

    // Test: the console calls the API, which calls HubSpot with the stored token.
    const before = stack.full.hubspot.requests.length;
    await card.getByRole('button', { name: 'Test connection' }).click();
    await card.getByText(`Connection works (account ${stack.full.hubspot.portalId}).`).waitFor();
    expect(stack.full.hubspot.requests.slice(before).some((r) => r.authorization === `Bearer ${token}`)).toBe(true);

    // Schedule: a bad time zone shows the API's problem; a good interval is saved and shown.
    await card.getByText('Schedule', { exact: true }).click();
    const schedule = card.getByRole('form', { name: 'Schedule of HubSpot main' });
    await schedule.getByLabel(/^Or cron/).fill('0 9 * * 1');
    await schedule.getByLabel(/^Time zone/).fill('Mars/Olympus_Mons');
    await schedule.getByRole('button', { name: 'Save schedule' }).click();
    const problem = schedule.getByRole('alert');
    await problem.waitFor();
    expect(await problem.textContent()).toContain('Request is invalid');
    expect(await problem.textContent()).toContain('IANA time zone');
    await schedule.getByLabel(/^Or cron/).fill('');
    await schedule.getByLabel(/^Time zone/).fill('');
    await schedule.getByLabel(/^Every/).fill('15');
    await schedule.getByRole('button', { name: 'Save schedule' }).click();
    await card.getByText('Scheduled every 15 minutes.').waitFor();
    const { rows: scheduled } = await stack.full.admin.query(`select schedule from public.crm_connections where id = $1`, [connectionId]);
    expect(scheduled[0].schedule).toMatchObject({ intervalSeconds: 900, paused: false });
    const described = await stack.full.temporal.client.schedule.getHandle(`crm-sync-schedule:${connectionId}`).describe();
    expect(described.spec.intervals?.[0]?.every).toBe(900_000);

    // Sync now: HubSpot answers the first deals page with a 503 and Retry-After, so the sync stays
    // running a few seconds; the history shows it running and then done without any reload.
    stack.full.hubspot.injectFailure({ status: 503, headers: { 'retry-after': '3' }, body: { status: 'error', message: 'Service unavailable', category: 'SERVICE_UNAVAILABLE' }, pathPattern: /\/crm\/v3\/objects\/deals/, times: 1 });
    await card.getByRole('button', { name: 'Sync now' }).click();
    const history = card.getByRole('list', { name: 'Syncs of HubSpot main' });
    await history.getByText(/Syncing/).waitFor({ timeout: 20_000 });
    await history.getByText(/Done:/).waitFor({ timeout: 60_000 });
    const { rows: runs } = await stack.full.admin.query<{ status: string; added: number; pages: number }>(`select status, added, pages from public.crm_sync_runs where connection_id = $1`, [connectionId]);
    expect(runs).toHaveLength(1);
    expect(runs[0]!.status).toBe('completed');
    const { rows: deals } = await stack.full.admin.query<{ n: number }>(`select count(*)::int as n from public.crm_records where connection_id = $1 and object_type = 'deals'`, [connectionId]);
    expect(deals[0]!.n).toBe(3);
    expect(await history.textContent()).toContain(`Done: ${runs[0]!.added} added`);
    expect(await card.getByRole('button', { name: 'Sync now' }).isEnabled()).toBe(true);

    // A webhook from HubSpot arrives; the open list follows it until the intake processed it.
    const path = `/v1/webhooks/crm/hubspot/${connectionId}`;
    const delivery = stack.full.hubspot.webhookDelivery(`https://api.example.test${path}`, [
      { eventId: Math.floor(Math.random() * 1e12), subscriptionType: 'deal.propertyChange', objectId: 100_001, propertyName: 'amount', propertyValue: '1200' },
    ]);
    const received = await stack.full.app.inject({ method: 'POST', url: path, headers: delivery.headers, payload: delivery.body });
    expect(received.json()).toMatchObject({ accepted: 1 });
    await card.getByRole('button', { name: 'Check for new deliveries' }).click();
    const deliveries = card.getByRole('list', { name: 'Webhook deliveries of HubSpot main' });
    await deliveries.getByText(/deal.* 100001 \(upsert\), processed/).waitFor({ timeout: 30_000 });

    // Messaging settings: the HubSpot sender actor, stored per connection.
    await card.getByText('Messaging settings', { exact: true }).click();
    const messaging = card.getByRole('form', { name: 'Messaging settings of HubSpot main' });
    await messaging.getByLabel(/Sender/).fill('user-7');
    await messaging.getByRole('button', { name: 'Save messaging settings' }).click();
    expect(await messaging.getByRole('alert').textContent()).toMatch(/Request is invalid.*hubspotSenderActorId/s);
    await messaging.getByLabel(/Sender/).fill('A-4242');
    await messaging.getByRole('button', { name: 'Save messaging settings' }).click();
    await messaging.getByText('Messaging settings saved.').waitFor();
    const { rows: settings } = await stack.full.admin.query(`select hubspot_sender_actor_id from public.crm_messaging_settings where connection_id = $1`, [connectionId]);
    expect(settings).toEqual([{ hubspot_sender_actor_id: 'A-4242' }]);

    await stack.expectAccessible(page, 'CRM screen with a connection, its history and settings open');
    await page.setViewportSize({ width: 375, height: 900 });
    await stack.expectAccessible(page, 'CRM screen at 375 px');
    await page.setViewportSize({ width: 1280, height: 900 });
    expect(stack.cspViolations).toEqual([]);
    expect(stack.pageErrors).toEqual([]);
  }, 120_000);

  it.each([
    ['kommo', 'Kommo'],
    ['hubspot', 'HubSpot'],
  ] as const)('connects %s through OAuth: the consent page sends the browser back to the CRM screen with the connection active', async (provider, label) => {
    // The CRM apps' registered redirect URI is this API's callback; its port is known only now.
    const callback = `${stack.base}/v1/crm/oauth/callback/${provider}`;
    stack.full.settings[provider].app!.redirectUri = callback;
    stack.full.kommo.redirectUri = `${stack.base}/v1/crm/oauth/callback/kommo`;
    const fake = provider === 'kommo' ? stack.full.kommo : stack.full.hubspot;
    const tokenPath = provider === 'kommo' ? '/oauth2/access_token' : '/oauth/v1/token';
    const exchangesBefore = fake.requests.filter((r) => r.path === tokenPath).length;

    await page.goto(`${stack.base}/#/orgs/${orgId}/crm`);
    await page.getByRole('heading', { name: 'CRM connections', exact: true }).waitFor();
    const name = `${label} via OAuth`;
    const connectForm = page.getByRole('form', { name: 'Connect a CRM' });
    await connectForm.getByLabel('Name').fill(name);
    await connectForm.getByLabel('CRM').selectOption(provider);
    await connectForm.getByLabel('How').selectOption('oauth');
    await connectForm.getByRole('button', { name: `Continue to ${label}` }).click();
    await page.getByText(`“${name}” waits for your authorization`).waitFor();
    const card = page.getByRole('article', { name: `Connection ${name}` });
    await card.getByText('waiting for authorization at the CRM').waitFor();

    await page.getByRole('link', { name: `Authorize at ${label}` }).click();
    // CRM consent → API callback (code exchanged, bound to this browser) → 303 to the console.
    await page.waitForURL(`${stack.base}/#/orgs/${orgId}/crm`);
    await card.getByText('active', { exact: true }).waitFor();
    const { rows } = await stack.full.admin.query(`select c.status, (k.connection_id is not null) as has_tokens from public.crm_connections c left join public.crm_credentials k on k.connection_id = c.id where c.org_id = $1 and c.name = $2`, [orgId, name]);
    expect(rows).toEqual([{ status: 'active', has_tokens: true }]);
    expect(fake.requests.filter((r) => r.path === tokenPath).length).toBe(exchangesBefore + 1);
    expect(stack.cspViolations).toEqual([]);
    expect(stack.pageErrors).toEqual([]);
  });
});
