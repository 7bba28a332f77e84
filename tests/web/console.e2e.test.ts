/**
 * The console end to end in a real browser (Debian's Chromium, headless, driven by
 * playwright-core) against the real stack: the API serving the built console, Postgres,
 * Temporal with an agent worker, the fake LLM and the sandbox Supabase Auth.
 *
 * A new user signs up, founds an org, creates an agent whose tool needs approval, starts a run
 * and follows it live, approves the tool call from the inbox and sees the run finish; invites a
 * member who signs up from the link and sees the org. Every screen passes axe-core without
 * serious or critical violations and fits 375 px without horizontal scrolling; API errors show
 * the problem's title and detail; the page runs under its CSP without a single violation.
 *
 * Chromium: CHROMIUM_PATH, or /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it
 * and sets REQUIRE_CHROMIUM=1, so CI fails rather than skips when it is missing).
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ARTIFACTS, axeViolations, chromiumMissing, useConsoleBrowser } from '../support/console-browser.js';

describe('console (real browser, real stack)', () => {
  if (chromiumMissing()) return;
  const stack = useConsoleBrowser({ label: 'console' });
  const { newContext, signUp } = stack;
  const tag = randomUUID().slice(0, 8);
  const owner = { email: `owner-${tag}@example.test`, password: 'owner-password-1' };
  const invitee = { email: `invitee-${tag}@example.test`, password: 'invitee-password-1' };
  const orgName = `Acme Sales ${tag}`;
  let orgId = '';
  let runId = '';

  it('signs up, founds an org (showing the API problem for a blank name), creates an agent, runs it live and approves its tool call from the inbox', async () => {
    const context = await newContext();
    const page = await context.newPage();
    const started = Date.now();
    await page.goto(stack.base);
    await page.getByRole('heading', { name: 'Sign in', exact: true }).waitFor();
    const firstScreenMs = Date.now() - started;
    await signUp(page, owner);

    // No org yet: the console offers to found one. A blank name passes the browser's `required`
    // and is refused by the API; the page shows the problem's title and detail.
    await page.getByRole('heading', { name: 'New organization', exact: true }).waitFor();
    await page.getByLabel('Name').fill('   ');
    await page.getByRole('button', { name: 'Create organization' }).click();
    const problem = page.getByRole('alert');
    await problem.waitFor();
    expect(await problem.textContent()).toContain('Request is invalid');
    expect(await problem.textContent()).toMatch(/body\.name/);
    await page.getByLabel('Name').fill(orgName);
    await page.getByRole('button', { name: 'Create organization' }).click();
    await page.getByRole('heading', { name: 'Agents', exact: true }).waitFor();
    orgId = /#\/orgs\/([0-9a-f-]{36})\/agents/.exec(page.url())![1]!;
    const orgs = (await stack.full.admin.query(`select o.name, m.role from public.organizations o join public.organization_members m on m.org_id = o.id where o.id = $1`, [orgId])).rows;
    expect(orgs).toEqual([{ name: orgName, role: 'owner' }]);

    await page.getByRole('link', { name: 'New agent' }).click();
    await page.getByLabel('Name').fill('Closer');
    await page.getByLabel('Instructions').fill('Answer pricing questions from the knowledge base.');
    await page.getByLabel('Allow: Search the knowledge base').check();
    await page.getByLabel('Needs approval: Search the knowledge base').check();
    await page.getByRole('button', { name: 'Create agent' }).click();
    await page.getByRole('heading', { name: 'Closer', exact: true }).waitFor();
    const agent = (await stack.full.admin.query(`select allowed_tools, approval_tools from public.agents where org_id = $1`, [orgId])).rows;
    expect(agent).toEqual([{ allowed_tools: ['knowledge_search'], approval_tools: ['knowledge_search'] }]);

    stack.full.llm!.enqueue(
      { kind: 'tool_calls', calls: [{ name: 'knowledge_search', arguments: '{"query":"pricing"}' }], usage: { inputTokens: 120, outputTokens: 12 } },
      { kind: 'text', content: 'Our plans start at 49 EUR per seat.', usage: { inputTokens: 200, outputTokens: 30 } },
    );
    await page.getByLabel('Task for the agent').fill('What does it cost?');
    await page.getByRole('button', { name: 'Start run' }).click();
    await page.getByRole('heading', { name: 'Run', exact: true }).waitFor();
    runId = /#\/orgs\/[0-9a-f-]{36}\/runs\/([0-9a-f-]{36})/.exec(page.url())![1]!;
    // Followed live over SSE: the approval request appears without a reload.
    await page.getByText('Approval requested for knowledge_search').waitFor({ timeout: 30_000 });
    expect(await page.getByTestId('run-tokens').textContent()).toBe('120 in / 12 out');

    await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Approvals' }).click();
    const card = page.getByRole('article', { name: 'Approval for knowledge_search' });
    await card.waitFor({ timeout: 15_000 });
    expect(await card.textContent()).toContain('pricing');
    await card.getByLabel('Comment (optional)').fill('Go ahead, quote the list price.');
    await card.getByRole('button', { name: 'Approve' }).click();
    await page.getByText('Nothing waits for you.').waitFor({ timeout: 15_000 });
    const decided = (await stack.full.admin.query(`select a.status, r.comment from public.run_approvals a left join public.run_approval_responses r on r.id = a.response_id where a.run_id = $1`, [runId])).rows;
    expect(decided).toEqual([{ status: 'approved', comment: 'Go ahead, quote the list price.' }]);

    // The run continues after the approval: the runs list links to its timeline, which ends completed.
    await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Runs' }).click();
    await page.getByRole('link', { name: /^Closer · / }).click();
    await page.getByText('Run completed').waitFor({ timeout: 30_000 });
    await page.getByText('Our plans start at 49 EUR per seat.').first().waitFor();
    expect(await page.getByTestId('run-tokens').textContent()).toBe('320 in / 42 out');
    const temporalLink = await page.getByRole('link', { name: 'Open in Temporal UI (operators)' }).getAttribute('href');
    expect(temporalLink).toBe(`http://127.0.0.1:8233/namespaces/default/workflows/agent-run%3A${runId}`);

    console.log(`[console e2e] first screen (sign-in) rendered ${firstScreenMs} ms after navigation`);
    await context.close();
  }, 180_000);

  it('invites a member whose invite link, after signing up, joins the org and shows it', async () => {
    expect(orgId).not.toBe('');
    const ownerContext = await newContext();
    const page = await ownerContext.newPage();
    await page.goto(stack.base);
    await page.getByLabel('Email').fill(owner.email);
    await page.getByLabel('Password').fill(owner.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Agents', exact: true }).waitFor();
    await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Members' }).click();
    await page.getByLabel('Email').fill(invitee.email);
    await page.getByRole('button', { name: 'Create invite link' }).click();
    const link = await page.getByTestId('invite-link').inputValue();
    expect(link).toMatch(new RegExp(`^${stack.base}/#/invite/`));
    await ownerContext.close();

    const inviteeContext = await newContext();
    const joining = await inviteeContext.newPage();
    await joining.goto(link);
    await joining.getByText('with the email address the invite was sent to').waitFor();
    await signUp(joining, invitee);
    await joining.getByRole('heading', { name: 'Agents', exact: true }).waitFor({ timeout: 15_000 });
    expect(joining.url()).toContain(`#/orgs/${orgId}/agents`);
    expect(await joining.getByLabel('Organization').locator('option:checked').textContent()).toBe(orgName);
    await joining.getByRole('link', { name: 'Closer' }).waitFor();
    const members = (await stack.full.admin.query(`select role from public.organization_members where org_id = $1 order by role`, [orgId])).rows.map((r) => r.role);
    expect(members).toEqual(['member', 'owner']);
    await inviteeContext.close();
  }, 120_000);

  it('passes axe-core (no serious or critical violation) and fits 375 px without horizontal scrolling on every screen', async () => {
    expect(runId).not.toBe('');
    const context = await newContext(375);
    const page = await context.newPage();
    const check = (label: string) => stack.expectAccessible(page, label);

    await page.goto(stack.base);
    await page.getByRole('heading', { name: 'Sign in', exact: true }).waitFor();
    // The checker itself: an input without a label is a critical violation it must report.
    await page.evaluate(`document.querySelector('form').append(Object.assign(document.createElement('input'), { id: 'unlabelled-probe' }))`);
    expect((await axeViolations(page)).filter((v) => v.impact === 'critical').map((v) => v.id)).toContain('label');
    await page.evaluate(`document.getElementById('unlabelled-probe').remove()`);
    await check('sign-in');
    await page.getByLabel('Email').fill(owner.email);
    await page.getByLabel('Password').fill(owner.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Agents', exact: true }).waitFor();
    await check('agents');
    const agentId = (await stack.full.admin.query(`select id from public.agents where org_id = $1`, [orgId])).rows[0].id as string;

    const screens: Array<[string, string, string]> = [
      ['agent editor', `#/orgs/${orgId}/agents/${agentId}`, 'Closer'],
      ['new agent', `#/orgs/${orgId}/agents/new`, 'New agent'],
      ['runs', `#/orgs/${orgId}/runs`, 'Runs'],
      ['run timeline', `#/orgs/${orgId}/runs/${runId}`, 'Run'],
      ['approvals', `#/orgs/${orgId}/approvals`, 'Approvals'],
      ['conversations', `#/orgs/${orgId}/conversations`, 'Conversations'],
      ['crm', `#/orgs/${orgId}/crm`, 'CRM connections'],
      ['knowledge', `#/orgs/${orgId}/knowledge`, 'Knowledge'],
      ['members', `#/orgs/${orgId}/members`, 'Members'],
      ['api keys', `#/orgs/${orgId}/api-keys`, 'API keys'],
      ['usage', `#/orgs/${orgId}/usage`, 'Usage'],
      ['new org', '#/orgs/new', 'New organization'],
    ];
    for (const [label, hash, heading] of screens) {
      await page.goto(`${stack.base}/${hash}`);
      await page.getByRole('heading', { name: heading, exact: true }).waitFor();
      if (label === 'run timeline') await page.getByText('Run completed').waitFor();
      await check(label);
    }

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.goto(`${stack.base}/#/orgs/${orgId}/runs/${runId}`);
    await page.getByText('Run completed').waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-run-375.png'), fullPage: true });
    await context.close();
  }, 180_000);

  it('ran every page under its Content-Security-Policy without a violation or an uncaught error', () => {
    expect(stack.cspViolations).toEqual([]);
    expect(stack.pageErrors).toEqual([]);
  });
});
