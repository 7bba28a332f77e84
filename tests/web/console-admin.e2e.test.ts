/**
 * The console's admin screens in a real Chromium against the real stack
 * (tests/support/console-browser.ts): knowledge (text, a multipart file upload and a web page,
 * each followed live until ready or failed with its reason; a refused upload shows the API's
 * problem; delete), API keys (the secret shown once, then only its prefix; it works until
 * revoked), usage (a run made with that key appears as runs, tokens and cost per day, in a chart
 * with a table alternative) and members (change a role, the API's refusal shown, remove).
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withServiceRole } from '../../lib/db.js';
import { chromiumMissing, useConsoleBrowser } from '../support/console-browser.js';

describe('console admin screens (real browser, real stack)', () => {
  if (chromiumMissing()) return;
  const stack = useConsoleBrowser({ label: 'console-admin' });
  const tag = randomUUID().slice(0, 8);
  const owner = { email: `admin-owner-${tag}@example.test`, password: 'admin-owner-password-1' };
  let orgId = '';
  let page: Page;
  // A customer's web site on loopback (the knowledge worker's SSRF guard allows 127.0.0.1 in tests).
  let site: Server;
  let siteUrl = '';

  beforeAll(async () => {
    site = createServer((req, res) => {
      if (req.url === '/pricing') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end('<!doctype html><html><head><title>Pricing</title></head><body><h1>Pricing</h1><p>The Team plan costs 49 EUR per seat and month.</p></body></html>');
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not here');
    });
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => site?.close(resolve));
  });

  const section = async (name: string, heading = name) => {
    await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name, exact: true }).click();
    await page.getByRole('heading', { name: heading, exact: true }).waitFor();
  };
  const documents = async () =>
    (await stack.full.admin.query<{ title: string; status: string; failure_reason: string | null; source_kind: string }>(`select title, status, failure_reason, source_kind from public.knowledge_documents where org_id = $1 order by title`, [orgId])).rows;

  it('adds knowledge as text, an uploaded file and a web page, follows each to ready or failed with the reason, shows a refused upload and deletes', async () => {
    const context = await stack.newContext();
    page = await context.newPage();
    await page.goto(stack.base);
    await stack.signUp(page, owner);
    await page.getByRole('heading', { name: 'New organization', exact: true }).waitFor();
    await page.getByLabel('Name').fill(`Admin team ${tag}`);
    await page.getByRole('button', { name: 'Create organization' }).click();
    await page.getByRole('heading', { name: 'Agents', exact: true }).waitFor();
    orgId = /#\/orgs\/([0-9a-f-]{36})\//.exec(page.url())![1]!;
    await section('Knowledge');
    await page.getByText('No documents yet').waitFor();
    const form = page.getByRole('form', { name: 'Add a document' });

    // Text: ingested in the background; the card follows it to ready without a reload.
    await form.getByLabel('Title').fill('Refund policy');
    await form.getByRole('textbox', { name: 'Text' }).fill('Refunds are granted within 30 days of purchase.');
    await form.getByRole('button', { name: 'Add document' }).click();
    const refund = page.getByRole('listitem', { name: 'Document Refund policy' });
    await refund.getByText(/^Ready/).waitFor({ timeout: 30_000 });

    // A file, uploaded as multipart.
    await form.getByRole('radio', { name: /^File/ }).check();
    await form.getByLabel('File', { exact: true }).setInputFiles({ name: 'onboarding.md', mimeType: 'text/markdown', buffer: Buffer.from('# Onboarding\n\nNew customers get a kickoff call in their first week.\n') });
    await form.getByRole('button', { name: 'Add document' }).click();
    const onboarding = page.getByRole('listitem', { name: 'Document onboarding' });
    await onboarding.getByText(/^Ready/).waitFor({ timeout: 30_000 });
    expect(await onboarding.textContent()).toContain('File onboarding.md');

    // A file the API cannot read: its problem's title and detail are shown.
    await form.getByLabel('File', { exact: true }).setInputFiles({ name: 'logo.png', mimeType: 'image/png', buffer: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]) });
    await form.getByRole('button', { name: 'Add document' }).click();
    const refused = form.getByRole('alert');
    await refused.waitFor();
    expect(await refused.textContent()).toMatch(/Unsupported media type.*not a PDF, DOCX, HTML, Markdown or plain-text/is);

    // Web pages: one that exists, one that answers 404 (failed, with the reason).
    await form.getByRole('radio', { name: 'Web page' }).check();
    await form.getByLabel('Title (optional)').fill('Pricing page');
    await form.getByLabel('Address').fill(`${siteUrl}/pricing`);
    await form.getByRole('button', { name: 'Add document' }).click();
    await page.getByRole('listitem', { name: 'Document Pricing page' }).getByText(/^Ready/).waitFor({ timeout: 30_000 });
    await form.getByLabel('Title (optional)').fill('Old page');
    await form.getByLabel('Address').fill(`${siteUrl}/gone`);
    await form.getByRole('button', { name: 'Add document' }).click();
    await page.getByRole('listitem', { name: 'Document Old page' }).getByText('Failed: The page answered HTTP 404.').waitFor({ timeout: 30_000 });

    expect(await documents()).toEqual([
      { title: 'Old page', status: 'failed', failure_reason: 'The page answered HTTP 404.', source_kind: 'url' },
      { title: 'Pricing page', status: 'ready', failure_reason: null, source_kind: 'url' },
      { title: 'Refund policy', status: 'ready', failure_reason: null, source_kind: 'text' },
      { title: 'onboarding', status: 'ready', failure_reason: null, source_kind: 'file' },
    ]);
    const { rows: chunks } = await stack.full.admin.query<{ n: number }>(`select count(*)::int as n from public.knowledge_chunks where org_id = $1`, [orgId]);
    expect(chunks[0]!.n).toBeGreaterThanOrEqual(3);

    await stack.expectAccessible(page, 'knowledge screen with ready and failed documents');
    await page.getByRole('button', { name: 'Delete Old page' }).click();
    await page.getByRole('listitem', { name: 'Document Old page' }).waitFor({ state: 'detached' });
    expect((await documents()).map((d) => d.title)).toEqual(['Pricing page', 'Refund policy', 'onboarding']);
    expect(stack.cspViolations).toEqual([]);
    expect(stack.pageErrors).toEqual([]);
  }, 120_000);

  it('shows a new API key once, then only its prefix; the key works until revoked; its run shows up in usage as a chart and a table', async () => {
    await section('API keys');
    const form = page.getByRole('form', { name: 'Create an API key' });
    await form.getByLabel('Name').fill('Website form');
    await form.getByLabel('Scope').selectOption('admin');
    await form.getByRole('button', { name: 'Create key' }).click();
    const secretBox = page.getByTestId('api-key-secret');
    await secretBox.waitFor();
    const secret = await secretBox.inputValue();
    const { rows: keys } = await stack.full.admin.query<{ id: string; prefix: string }>(`select id, prefix from public.api_keys where org_id = $1 and name = 'Website form'`, [orgId]);
    expect(keys).toHaveLength(1);
    const prefix = keys[0]!.prefix;
    expect(secret.startsWith(prefix)).toBe(true);
    expect(secret.length).toBeGreaterThan(prefix.length + 16);
    const keyCard = page.getByRole('listitem', { name: 'API key Website form' });
    await keyCard.getByText(`${prefix}…`).waitFor();
    await stack.expectAccessible(page, 'API keys with the new secret shown');

    // Hidden on request, and never shown again: a fresh load has the prefix only.
    await page.getByRole('button', { name: 'Done, hide it' }).click();
    expect(await page.content()).not.toContain(secret);
    await page.reload();
    await keyCard.getByText(`${prefix}…`).waitFor();
    expect(await page.content()).not.toContain(secret);

    // The key works: it makes an agent and starts a run, which the fake model answers.
    const auth = { authorization: `Bearer ${secret}` };
    const agent = await stack.full.app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/agents`, headers: auth, payload: { name: 'Usage bot', model: 'gpt-4o-mini', instructions: 'Be brief.' } });
    expect(agent.statusCode).toBe(201);
    stack.full.llm!.enqueue({ kind: 'text', content: 'Hello from the bot.', usage: { inputTokens: 300, outputTokens: 45 } });
    const run = await stack.full.app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/agents/${agent.json().id}/runs`, headers: auth, payload: { input: 'Say hello' } });
    expect(run.statusCode).toBe(201);
    await expect.poll(async () => (await stack.full.admin.query(`select status from public.agent_runs where id = $1`, [run.json().id])).rows[0]?.status, { timeout: 30_000 }).toBe('completed');

    await section('Usage');
    expect(await page.getByTestId('usage-runs').textContent()).toBe('1');
    expect(await page.getByTestId('usage-tokens').textContent()).toBe('345');
    const today = new Date().toISOString().slice(0, 10);
    const row = page.getByRole('row', { name: new RegExp(`^${today}`) });
    expect(await row.textContent()).toContain('345 (300 / 45)');
    // The chart is an image named by its heading and described by a summary that points to the table.
    const chart = page.getByRole('img', { name: 'Tokens per day (last 30 days)' });
    await chart.waitFor();
    expect(await page.locator('#usage-chart-summary').textContent()).toContain(`Busiest day ${today} with 345 tokens`);
    await page.getByLabel('Runs', { exact: true }).check();
    await page.getByRole('img', { name: 'Runs per day (last 30 days)' }).waitFor();
    expect(await page.locator('#usage-chart-summary').textContent()).toContain(`Busiest day ${today} with 1 runs`);
    expect(await page.locator('.chart rect[height="100"]').count()).toBe(1);
    await stack.expectAccessible(page, 'usage');
    await page.setViewportSize({ width: 375, height: 900 });
    await stack.expectAccessible(page, 'usage at 375 px');
    await page.setViewportSize({ width: 1280, height: 900 });

    // Revoked: the card says so and the key no longer opens the API.
    await section('API keys');
    await keyCard.getByRole('button', { name: 'Revoke' }).click();
    await keyCard.getByText(/^Revoked/).waitFor();
    const { rows: revoked } = await stack.full.admin.query(`select revoked_at is not null as revoked from public.api_keys where id = $1`, [keys[0]!.id]);
    expect(revoked).toEqual([{ revoked: true }]);
    expect((await stack.full.app.inject({ method: 'GET', url: `/v1/orgs/${orgId}/agents`, headers: auth })).statusCode).toBe(401);
    expect(stack.cspViolations).toEqual([]);
    expect(stack.pageErrors).toEqual([]);
  }, 120_000);

  it("changes a member's role, shows the API's refusal to demote the last owner, and removes the member", async () => {
    const colleague = randomUUID();
    // An operator may record a member's email; members who join through the API get their token's.
    await withServiceRole(stack.full.admin, (tx) =>
      tx.query(`insert into public.organization_members (org_id, user_id, role, email) values ($1, $2, 'member', $3)`, [orgId, colleague, `colleague-${colleague}@example.test`]),
    );
    await section('Members');
    const card = page.getByRole('listitem', { name: `Member ${colleague}` });
    await card.getByRole('heading', { name: `colleague-${colleague}@example.test` }).waitFor();
    await stack.expectAccessible(page, 'members');
    const roleOf = async (userId: string) => (await stack.full.admin.query(`select role from public.organization_members where org_id = $1 and user_id = $2`, [orgId, userId])).rows[0]?.role;

    await card.getByLabel('Role').selectOption('admin');
    await page.getByText('Role changed to admin.').waitFor();
    expect(await roleOf(colleague)).toBe('admin');

    // The only owner cannot step down: the API refuses with a problem, and the select shows the real role.
    const me = (await stack.full.admin.query<{ user_id: string }>(`select user_id from public.organization_members where org_id = $1 and role = 'owner'`, [orgId])).rows[0]!.user_id;
    const mine = page.getByRole('listitem', { name: `Member ${me}` });
    // The founder's email comes from the sign-in token that founded the org.
    await mine.getByRole('heading', { name: `${owner.email} (you)` }).waitFor();
    await mine.getByLabel('Role').selectOption('member');
    const problem = page.getByRole('alert');
    await problem.waitFor();
    expect(await problem.textContent()).toMatch(/owner/i);
    expect(await roleOf(me)).toBe('owner');
    await expect.poll(() => mine.getByLabel('Role').inputValue()).toBe('owner');

    await card.getByRole('button', { name: 'Remove' }).click();
    await card.getByRole('button', { name: 'Confirm removal' }).click();
    await page.getByText('Member removed.').waitFor();
    await card.waitFor({ state: 'detached' });
    expect(await roleOf(colleague)).toBeUndefined();
    expect(stack.cspViolations).toEqual([]);
    expect(stack.pageErrors).toEqual([]);
  });
});
