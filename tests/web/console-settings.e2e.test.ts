/**
 * The console's Settings screen in a real Chromium against the real stack
 * (tests/support/console-browser.ts): an owner renames the org, sets the org's own model provider
 * (the key write-only: the page shows its last four characters, never the key), sees the API's
 * refusal of a private base URL, goes back to the platform's model and sets the daily quota; each
 * change is checked in Postgres.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { chromiumMissing, useConsoleBrowser } from '../support/console-browser.js';

describe('console settings screen (real browser, real stack)', () => {
  if (chromiumMissing()) return;
  const stack = useConsoleBrowser({ label: 'console-settings' });
  const tag = randomUUID().slice(0, 8);
  const owner = { email: `settings-owner-${tag}@example.test`, password: 'settings-owner-password-1' };
  const member = { email: `settings-member-${tag}@example.test`, password: 'settings-member-password-1' };
  const KEY = `sk-console-${randomUUID()}`;
  let orgId = '';

  it('renames the org, sets the provider with a write-only key, shows a refused private URL, removes it and sets the quota', async () => {
    const context = await stack.newContext();
    const page = await context.newPage();
    await page.goto(stack.base);
    await stack.signUp(page, owner);
    await page.getByRole('heading', { name: 'New organization', exact: true }).waitFor();
    await page.getByLabel('Name').fill(`Settings team ${tag}`);
    await page.getByRole('button', { name: 'Create organization' }).click();
    await page.getByRole('heading', { name: 'Agents', exact: true }).waitFor();
    orgId = /#\/orgs\/([0-9a-f-]{36})\//.exec(page.url())![1]!;
    await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Settings', exact: true }).click();
    await page.getByRole('heading', { name: 'Settings', exact: true }).waitFor();
    await page.getByText('Runs use the platform’s model.').waitFor();
    const org = async () => (await stack.full.admin.query<{ name: string; daily_token_quota: number | null }>('select name, daily_token_quota::int as daily_token_quota from public.organizations where id = $1', [orgId])).rows[0]!;
    const providerRows = async () =>
      (await stack.full.admin.query<{ base_url: string; default_model: string; embedding_model: string | null; key_hint: string | null; api_key: string | null }>(
        'select p.base_url, p.default_model, p.embedding_model, p.key_hint, k.api_key from public.org_llm_providers p left join public.org_llm_provider_keys k using (org_id) where p.org_id = $1',
        [orgId],
      )).rows;

    // Rename.
    const nameForm = page.getByRole('form', { name: 'Organization name' });
    await nameForm.getByLabel('Name').fill(`Renamed ${tag}`);
    await nameForm.getByRole('button', { name: 'Rename' }).click();
    await expect.poll(async () => (await org()).name).toBe(`Renamed ${tag}`);

    // The org's own provider: a public https root (an IP literal, so saving resolves nothing; the API does not call it at save).
    const model = page.getByRole('form', { name: 'Model provider' });
    await model.getByLabel('Base URL').fill('https://93.184.215.14/v1');
    await model.getByLabel('Default model').fill('org/chat-model');
    await model.getByLabel('Embedding model (optional)').fill('org/embed-model');
    const keyField = model.getByLabel('API key');
    expect(await keyField.getAttribute('type')).toBe('password');
    await keyField.fill(KEY);
    await model.getByRole('button', { name: 'Save model' }).click();
    await page.getByText(`Key set · ends in ${KEY.slice(-4)}`).waitFor();
    await page.getByText('Runs use this organization’s own OpenAI-compatible provider.').waitFor();
    expect(await keyField.inputValue()).toBe('');
    expect(await page.content()).not.toContain(KEY);
    const [stored] = await providerRows();
    expect(stored).toMatchObject({ base_url: 'https://93.184.215.14/v1', default_model: 'org/chat-model', embedding_model: 'org/embed-model', key_hint: `…${KEY.slice(-4)}` });
    // Encrypted at rest, not the key itself.
    expect(stored!.api_key).toMatch(/^v1\./);
    expect(stored!.api_key).not.toContain(KEY);

    // After a reload the form shows the settings, the key field stays empty and the key absent.
    await page.reload();
    await page.getByText(`Key set · ends in ${KEY.slice(-4)}`).waitFor();
    expect(await model.getByLabel('Base URL').inputValue()).toBe('https://93.184.215.14/v1');
    expect(await model.getByLabel('API key').inputValue()).toBe('');
    expect(await page.content()).not.toContain(KEY);
    await stack.expectAccessible(page, 'settings with a provider set');

    // A private address is refused: the problem's detail names body.baseUrl; nothing changes.
    // (127.0.0.1 is allowlisted for the tests' loopback fakes, so another private range stands in.)
    await model.getByLabel('Base URL').fill('https://10.0.0.5/v1');
    await model.getByLabel('API key').fill(KEY);
    await model.getByRole('button', { name: 'Save model' }).click();
    const refusal = model.getByRole('alert');
    await refusal.waitFor();
    expect(await refusal.textContent()).toMatch(/body\.baseUrl/);
    expect((await providerRows())[0]!.base_url).toBe('https://93.184.215.14/v1');

    // Back to the platform's model: the rows and the key are gone.
    await model.getByRole('button', { name: 'Use the platform’s model' }).click();
    await page.getByText('Runs use the platform’s model.').waitFor();
    await expect.poll(providerRows).toEqual([]);

    // The daily quota.
    const quotaForm = page.getByRole('form', { name: 'Daily quota' });
    await quotaForm.getByLabel(/Tokens per day/).fill('50000');
    await quotaForm.getByRole('button', { name: 'Save quota' }).click();
    await page.getByText(/0 tokens used today of 50000\./).waitFor();
    expect((await org()).daily_token_quota).toBe(50000);

    await page.setViewportSize({ width: 375, height: 900 });
    await stack.expectAccessible(page, 'settings at 375 px');
    expect(stack.cspViolations).toEqual([]);
    expect(stack.pageErrors).toEqual([]);
    await context.close();
  }, 120_000);

  it("shows a member the org's settings read-only", async () => {
    const context = await stack.newContext();
    const page = await context.newPage();
    await page.goto(stack.base);
    await stack.signUp(page, member);
    // Their own org tells us their user id; then the owner's org takes them as a member.
    await page.getByRole('heading', { name: 'New organization', exact: true }).waitFor();
    await page.getByLabel('Name').fill(`Member's own ${tag}`);
    await page.getByRole('button', { name: 'Create organization' }).click();
    await page.getByRole('heading', { name: 'Agents', exact: true }).waitFor();
    const ownOrg = /#\/orgs\/([0-9a-f-]{36})\//.exec(page.url())![1]!;
    const { rows } = await stack.full.admin.query<{ user_id: string }>('select user_id from public.organization_members where org_id = $1', [ownOrg]);
    await stack.full.admin.query(`insert into public.organization_members (org_id, user_id, role) values ($1, $2, 'member')`, [orgId, rows[0]!.user_id]);

    await page.goto(`${stack.base}/#/orgs/${orgId}/settings`);
    await page.getByText('Only admins change these settings.').waitFor();
    await page.getByText(/0 tokens used today of 50000\./).waitFor();
    await page.getByText('Runs use the platform’s model.').waitFor();
    expect(await page.getByRole('form', { name: 'Organization name' }).getByLabel('Name').inputValue()).toBe(`Renamed ${tag}`);
    for (const form of ['Organization name', 'Model provider', 'Daily quota']) {
      const inputs = page.getByRole('form', { name: form }).locator('input');
      expect(await inputs.count(), form).toBeGreaterThan(0);
      for (const input of await inputs.all()) expect(await input.isDisabled(), form).toBe(true);
      expect(await page.getByRole('form', { name: form }).getByRole('button').count(), form).toBe(0);
    }
    await stack.expectAccessible(page, 'settings read-only for a member');
    expect(stack.cspViolations).toEqual([]);
    expect(stack.pageErrors).toEqual([]);
    await context.close();
  }, 120_000);
});
