/**
 * Signing in to the console by magic link and by OAuth, in a real browser (Debian's Chromium via
 * playwright-core) against the real stack, with the sandbox Supabase Auth playing the project:
 * its mailbox holds the links and its stand-in GitHub asks which account to sign in as.
 *
 * A new user signs in by an emailed link and lands signed in; a user signs in with GitHub, and a
 * cancelled GitHub sign-in comes back as an error on the sign-in screen; an invite opened signed
 * out is accepted after a magic-link sign-in, and the used link then says it has expired. The
 * sign-in variants pass axe-core at 375 px, and no page breaks its CSP or throws. A returning user's
 * remembered org opens at once, and one they have left since gives way to their own without an error.
 */
import { randomUUID } from 'node:crypto';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { signUserToken } from '../support/auth.js';
import { chromiumMissing, useConsoleBrowser } from '../support/console-browser.js';

describe('console sign-in by magic link and OAuth (real browser, real stack)', () => {
  if (chromiumMissing()) return;
  const tag = randomUUID().slice(0, 8);
  const octocat = `octocat-${tag}@example.test`;
  const stack = useConsoleBrowser({ label: 'console-sign-in', auth: { oauthProviders: { github: { email: octocat } } } });

  /** The newest link the sandbox mailed to `email`, read as a test or a person reads it: over HTTP. */
  async function mailedLink(email: string): Promise<string> {
    const res = await fetch(`${stack.auth.url}/sandbox/mailbox?email=${encodeURIComponent(email)}`);
    const { messages } = (await res.json()) as { messages: Array<{ link: string }> };
    expect(messages.length, `no email to ${email}`).toBeGreaterThan(0);
    return messages.at(-1)!.link;
  }

  async function askForLink(page: Page, email: string): Promise<void> {
    await page.getByRole('button', { name: 'Email me a link instead' }).click();
    await page.getByRole('heading', { name: 'Sign in by email link' }).waitFor();
    await page.getByLabel('Email').fill(email);
    await page.getByRole('button', { name: 'Email me a sign-in link' }).click();
    await page.getByRole('status').getByText(email).waitFor();
  }

  it('signs a new user in by an emailed link: asked for on the sign-in screen, opened from the mailbox, lands signed in', async () => {
    const email = `linked-${tag}@example.test`;
    const context = await stack.newContext(375);
    const page = await context.newPage();
    await page.goto(stack.base);
    await page.getByRole('heading', { name: 'Sign in', exact: true }).waitFor();
    // The project enables GitHub: the screen offers it, and the email link.
    await page.getByRole('button', { name: 'Continue with GitHub' }).waitFor();
    await stack.expectAccessible(page, 'sign-in with providers');

    await page.getByRole('button', { name: 'Email me a link instead' }).click();
    await page.getByRole('heading', { name: 'Sign in by email link' }).waitFor();
    await stack.expectAccessible(page, 'sign-in by email link');
    await page.getByLabel('Email').fill(email);
    await page.getByRole('button', { name: 'Email me a sign-in link' }).click();
    await page.getByRole('status').getByText(email).waitFor();
    await stack.expectAccessible(page, 'sign-in link sent');
    expect(stack.auth.requests.some((r) => r.method === 'POST' && r.path === '/auth/v1/otp')).toBe(true);

    await page.goto(await mailedLink(email));
    // A new user has no org yet: the console offers to found one, signed in as the link's address.
    await page.getByRole('heading', { name: 'New organization', exact: true }).waitFor();
    expect(await page.locator('.who').textContent()).toBe(email);
    // The code was exchanged (PKCE) and taken out of the address.
    expect(page.url()).not.toContain('code=');
    expect(stack.auth.requests.some((r) => r.path === '/auth/v1/token' && r.grantType === 'pkce')).toBe(true);
    await context.close();
  }, 120_000);

  it('signs in with GitHub through the provider, and shows a cancelled GitHub sign-in as an error', async () => {
    const context = await stack.newContext();
    const page = await context.newPage();
    await page.goto(stack.base);
    await page.getByRole('button', { name: 'Continue with GitHub' }).click();
    await page.getByRole('heading', { name: 'Sign in with GitHub (sandbox)' }).waitFor();
    await page.getByRole('button', { name: 'Cancel' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    expect(await alert.textContent()).toContain('The user denied access');
    await page.getByRole('heading', { name: 'Sign in', exact: true }).waitFor();
    expect(page.url()).toBe(`${stack.base}/#/`);
    await stack.expectAccessible(page, 'sign-in after a cancelled provider');

    await page.getByRole('button', { name: 'Continue with GitHub' }).click();
    // The stand-in provider suggests the configured account.
    expect(await page.getByLabel('GitHub account email').inputValue()).toBe(octocat);
    await page.getByRole('button', { name: 'Authorize' }).click();
    await page.getByRole('heading', { name: 'New organization', exact: true }).waitFor();
    expect(await page.locator('.who').textContent()).toBe(octocat);
    await context.close();
  }, 120_000);

  it('accepts an invite opened signed out after signing in by an emailed link, which then works no more', async () => {
    const owner = { id: randomUUID(), email: `owner-${tag}@example.test` };
    const invitee = `invited-${tag}@example.test`;
    const ownerToken = await signUserToken(owner.id, { email: owner.email });
    const org = await stack.full.app.inject({ method: 'POST', url: '/v1/orgs', headers: { authorization: `Bearer ${ownerToken}` }, payload: { name: `Linked ${tag}` } });
    expect(org.statusCode).toBe(201);
    const orgId = org.json().id as string;
    const invite = await stack.full.app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/invites`, headers: { authorization: `Bearer ${ownerToken}` }, payload: { email: invitee } });
    expect(invite.statusCode).toBe(201);

    const context = await stack.newContext();
    const page = await context.newPage();
    await page.goto(`${stack.base}/#/invite/${invite.json().token as string}`);
    await page.getByText('with the email address the invite was sent to').waitFor();
    await askForLink(page, invitee);
    const link = await mailedLink(invitee);
    await page.goto(link);
    await page.getByRole('heading', { name: 'Agents', exact: true }).waitFor({ timeout: 15_000 });
    expect(page.url()).toBe(`${stack.base}/#/orgs/${orgId}/agents`);
    const members = (await stack.full.admin.query(`select role from public.organization_members where org_id = $1 order by role`, [orgId])).rows.map((r) => r.role);
    expect(members).toEqual(['member', 'owner']);
    await context.close();

    // The same link again, in another browser: used, so the sign-in screen says so.
    const again = await stack.newContext();
    const second = await again.newPage();
    await second.goto(link);
    const alert = second.getByRole('alert');
    await alert.waitFor();
    expect(await alert.textContent()).toContain('Email link is invalid or has expired');
    await second.getByRole('heading', { name: 'Sign in', exact: true }).waitFor();
    await again.close();
  }, 120_000);

  it('opens the remembered org at once, and moves on without an error when the user has left it since', async () => {
    const email = `returning-${tag}@example.test`;
    const context = await stack.newContext(375);
    const page = await context.newPage();
    await page.goto(stack.base);
    await page.getByRole('heading', { name: 'Sign in', exact: true }).waitFor();
    await askForLink(page, email);
    await page.goto(await mailedLink(email));
    await page.getByRole('heading', { name: 'New organization', exact: true }).waitFor();
    // The signed-in user's id, from the session supabase-js keeps under sb-<project>-auth-token.
    const userId = (await page.evaluate(`(() => {
      const key = Object.keys(localStorage).find((k) => /^sb-.*-auth-token$/.test(k));
      return JSON.parse(localStorage.getItem(key)).user.id;
    })()`)) as string;
    const remembered = (storage: string) => `localStorage.${storage}(${JSON.stringify(`console.org:${userId}`)}`;
    // The user's own org, and an org they were in when they last used the console but are not now.
    const mine = await stack.full.app.inject({ method: 'POST', url: '/v1/orgs', headers: { authorization: `Bearer ${await signUserToken(userId, { email })}` }, payload: { name: `Mine ${tag}` } });
    const left = await stack.full.app.inject({ method: 'POST', url: '/v1/orgs', headers: { authorization: `Bearer ${await signUserToken(randomUUID(), { email: `other-${tag}@example.test` })}` }, payload: { name: `Left ${tag}` } });
    expect([mine.statusCode, left.statusCode]).toEqual([201, 201]);
    const mineId = mine.json().id as string;
    const leftId = left.json().id as string;
    await page.evaluate(`${remembered('setItem')}, ${JSON.stringify(leftId)})`);

    const returning = await context.newPage();
    const agentAnswers: Array<{ orgId: string; status: number }> = [];
    returning.on('response', (res) => {
      const m = /\/v1\/orgs\/([0-9a-f-]{36})\/agents\?/.exec(res.url());
      if (m) agentAnswers.push({ orgId: m[1]!, status: res.status() });
    });
    await returning.goto(stack.base);
    await returning.waitForURL(`${stack.base}/#/orgs/${mineId}/agents`);
    await returning.getByRole('heading', { name: 'Agents', exact: true }).waitFor();
    await returning.getByText('No agents yet.').waitFor();
    // It did open the remembered org before the org list answered (its agents answered 404), then moved on quietly.
    expect(agentAnswers).toContainEqual({ orgId: leftId, status: 404 });
    expect(await returning.getByRole('alert').count()).toBe(0);
    expect(await returning.getByLabel('Organization').locator('option:checked').textContent()).toBe(`Mine ${tag}`);
    expect(await returning.evaluate(`${remembered('getItem')})`)).toBe(mineId);
    await context.close();
  }, 120_000);

  it('ran every page without a CSP violation or an uncaught error', () => {
    expect(stack.cspViolations).toEqual([]);
    expect(stack.pageErrors).toEqual([]);
  });
});
