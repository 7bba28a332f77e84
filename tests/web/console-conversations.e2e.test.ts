/**
 * The conversations part of the console in a real browser (Debian's Chromium via playwright-core)
 * against the real stack: the API serving the built console, Postgres, Temporal with an agent
 * worker and the CRM intake, the fake Kommo (the lead's chat) and the fake model.
 *
 * An admin adds a webhook endpoint and sees its secret once (the receiver verifies a later
 * delivery with exactly that secret); a Kommo lead writes and the thread appears in the list;
 * the agent's next answer streams into the open thread; the lead asks for a person, the
 * notices strip and the "Needs a person" filter show it, the thread shows the handoff banner
 * and "Resume the agent" gives it back (the run's handoff is cleared in the database); a reply
 * Kommo refuses flags the thread, and "Mark as handled" clears the flag. The list is in order of
 * latest activity and follows it live: the lead of the bottom thread writes and it moves to the
 * top without a reload, and an idle list reads nothing (no polling). Every new screen passes
 * axe-core and fits 375 px; no CSP violation and no uncaught error on any page.
 */
import { randomUUID } from 'node:crypto';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { kommoChatWebhookBody } from '../../scripts/stack/crm-fakes/kommo-talks.js';
import { signUserToken } from '../support/auth.js';
import { chromiumMissing, useConsoleBrowser } from '../support/console-browser.js';
import { connectKommoByToken, intakeSettled } from '../crm/support.js';
import { startWebhookReceiver, type WebhookReceiver } from '../fakes/webhook-receiver.js';

describe('console conversations (real browser, real stack)', { timeout: 180_000 }, () => {
  if (chromiumMissing()) return;
  const stack = useConsoleBrowser({ label: 'console-conversations', app: { kommoDataset: { leads: 5 } } });
  const tag = randomUUID().slice(0, 8);
  const owner = { id: randomUUID(), email: `manager-${tag}@example.test`, password: 'manager-password-1' };
  let orgId = '';
  let connectionId = '';
  let webhookPath = '';
  let agentId = '';
  let receiver: WebhookReceiver;
  let page: Page;
  let porto: ReturnType<typeof lead>;
  let other: ReturnType<typeof lead>;

  /** A Kommo lead with its own talk; `says` delivers a chat message as Kommo's webhook does. */
  const lead = (leadId: number) => {
    const talkId = stack.full.kommo.talks.addTalk({ leadId });
    const says = async (text: string) => {
      stack.full.kommo.talks.addMessage(talkId, { type: 'incoming', text });
      const res = await stack.full.app.inject({
        method: 'POST',
        url: webhookPath,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: kommoChatWebhookBody({ leadId, talkId, text, accountId: stack.full.kommo.accountId }),
      });
      expect(res.statusCode, res.body).toBe(200);
    };
    const replies = () => stack.full.kommo.talks.talks.get(talkId)!.messages.filter((m) => m.type === 'outgoing').map((m) => m.text);
    return { leadId, says, replies };
  };
  const runOf = async (leadId: number) =>
    (await stack.full.admin.query<{ id: string }>(`select id from public.agent_runs where agent_id = $1 and thread_key = $2`, [agentId, `crm:${connectionId}:${leadId}`])).rows[0]?.id;
  const nav = (name: string) => page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name, exact: true }).click();

  it('sets up an org with a Kommo connection and an agent that answers its leads; the manager signs in', async () => {
    receiver = await startWebhookReceiver();
    await stack.auth.addUser(owner);
    orgId = randomUUID();
    await stack.full.admin.query(`insert into public.organizations (id, name) values ($1, $2)`, [orgId, `Porto Bikes ${tag}`]);
    await stack.full.admin.query(`insert into public.organization_members (org_id, user_id, role) values ($1, $2, 'owner')`, [orgId, owner.id]);
    ({ connectionId, webhookPath } = await connectKommoByToken(stack.full.admin, orgId, stack.full.kommo));
    const token = await signUserToken(owner.id, { email: owner.email });
    const agent = await stack.full.app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgId}/agents`,
      headers: { authorization: `Bearer ${token}` },
      payload: { name: 'Lead desk', model: 'sandbox/echo', crmConnectionId: connectionId, triggers: [{ event: 'incoming_message' }] },
    });
    expect(agent.statusCode, agent.body).toBe(201);
    agentId = agent.json().id;

    page = await (await stack.newContext()).newPage();
    await stack.signIn(page, owner);
    await page.getByRole('heading', { name: 'Agents', exact: true }).waitFor();
  });

  it('adds a webhook endpoint and shows its signing secret once', async () => {
    await nav('Webhooks');
    await page.getByRole('heading', { name: 'Webhooks', exact: true }).waitFor();
    await page.getByLabel('URL').fill(receiver.url);
    await page.getByLabel('Description (optional)').fill('Sales pager');
    await page.getByLabel('A conversation was handed to people').check();
    await page.getByRole('button', { name: 'Add endpoint' }).click();
    const secret = await page.getByTestId('webhook-secret').inputValue();
    expect(secret).toMatch(/^whsec_/);
    receiver.secret = secret;
    const rows = (await stack.full.admin.query(`select url, description, event_types from public.webhook_endpoints where org_id = $1`, [orgId])).rows;
    expect(rows).toEqual([{ url: receiver.url, description: 'Sales pager', event_types: ['handoff.requested'] }]);
    await page.getByRole('listitem').filter({ hasText: receiver.url }).getByText('handoff.requested').waitFor();
    await stack.expectAccessible(page, 'webhooks with a new secret');

    await page.getByRole('button', { name: 'Done, hide it' }).click();
    await page.reload();
    await page.getByRole('heading', { name: receiver.url }).waitFor();
    expect(await page.content()).not.toContain(secret);
  });

  it("lists a lead's thread after its message, and streams the agent's next answer into the open thread", async () => {
    porto = lead(1_000_001);
    stack.full.llm!.enqueue({ kind: 'text', content: 'Yes, we ship to Porto.' });
    await porto.says('Do you ship to Porto?');
    await expect.poll(porto.replies, { timeout: 60_000, interval: 250 }).toEqual(['Yes, we ship to Porto.']);

    await nav('Conversations');
    const item = page.getByRole('list', { name: 'Conversations' }).getByRole('listitem').filter({ hasText: 'Lead 1000001' });
    await item.getByText('Yes, we ship to Porto.').waitFor({ timeout: 15_000 });
    expect(await item.textContent()).toContain('Agent:');
    await stack.expectAccessible(page, 'conversations list');
    await item.getByRole('link', { name: 'Lead 1000001' }).click();
    await page.getByRole('heading', { level: 1, name: 'Lead 1000001' }).waitFor();
    const chat = page.getByRole('list', { name: 'Messages' });
    await chat.locator('li.from-lead', { hasText: 'Do you ship to Porto?' }).waitFor();
    await chat.locator('li.from-agent', { hasText: 'Yes, we ship to Porto.' }).waitFor();

    // The next answer streams slowly: its tokens show in the open thread before it is recorded.
    const slow = 'Delivery takes three days and costs nothing above 100 EUR, and we can also assemble the bike for you.';
    stack.full.llm!.enqueue({ kind: 'text', content: slow, chunkDelayMs: 150 });
    await porto.says('How long does it take?');
    await chat.locator('li.from-lead', { hasText: 'How long does it take?' }).waitFor({ timeout: 30_000 });
    await chat.locator('li.from-agent.live').waitFor({ timeout: 30_000 });
    await chat.locator('li.from-agent:not(.live)', { hasText: slow }).waitFor({ timeout: 30_000 });
    await expect.poll(porto.replies, { timeout: 30_000, interval: 250 }).toEqual(['Yes, we ship to Porto.', slow]);

    // A member's message from the console is marked as the team's.
    stack.full.llm!.enqueue({ kind: 'text', content: 'Noted.' });
    await page.getByLabel('Message to the thread').fill('Ana from sales: I can hold a blue one for you.');
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    await chat.locator('li.from-staff', { hasText: 'Ana from sales: I can hold a blue one for you.' }).waitFor({ timeout: 30_000 });
    expect(await chat.locator('li.from-staff .sender').textContent()).toBe('Team');
  });

  it('a lead asking for a person shows live in the notices strip, the "Needs a person" filter and the thread banner; Resume gives it back to the agent', async () => {
    const runId = (await runOf(1_000_001))!;
    // Another lead the agent simply answers: the "Needs a person" filter must leave it out.
    other = lead(1_000_003);
    await other.says('Hi there');
    await expect.poll(other.replies, { timeout: 60_000, interval: 250 }).toHaveLength(1);
    await porto.says('Can I talk to a human please?');
    await intakeSettled(stack.full.admin, connectionId);

    // The open thread shows the handoff without a reload, and the strip names it.
    const banner = page.getByRole('status', { name: 'Handed off' });
    await banner.waitFor({ timeout: 30_000 });
    expect(await banner.textContent()).toContain('the lead asked for a person');
    const notices = page.getByRole('complementary', { name: 'Needs you' });
    await notices.getByRole('link', { name: 'A conversation was handed to people: the lead asked for a person' }).waitFor({ timeout: 15_000 });
    await page.getByRole('list', { name: 'Messages' }).getByText('Handed to people: the lead asked for a person').waitFor();
    await stack.expectAccessible(page, 'thread handed off');

    await nav('Conversations');
    const queue = page.getByRole('list', { name: 'Conversations' });
    await expect.poll(() => queue.getByRole('listitem').count(), { timeout: 15_000 }).toBe(2);
    const filtered = page.waitForResponse((r) => r.url().includes('/conversations?') && r.url().includes('status=needs_person'));
    await page.getByLabel('Show').selectOption('needs_person');
    await filtered;
    await expect.poll(() => queue.getByRole('listitem').allTextContents(), { timeout: 15_000 }).toEqual([expect.stringMatching(/^Lead 1000001.*handed off/)]);
    await stack.expectAccessible(page, 'conversations needing a person');

    // The notice links to the thread.
    await notices.getByRole('link', { name: /handed to people/ }).click();
    await page.waitForURL(`**/#/orgs/${orgId}/conversations/${runId}`);
    await page.getByRole('heading', { level: 1, name: 'Lead 1000001' }).waitFor();
    await page.getByRole('button', { name: 'Resume the agent' }).click();
    await banner.waitFor({ state: 'detached', timeout: 30_000 });
    const run = (await stack.full.admin.query(`select handoff_until, handoff_reason from public.agent_runs where id = $1`, [runId])).rows[0];
    expect(run).toEqual({ handoff_until: null, handoff_reason: 'lead_asked' });

    // The endpoint subscribed to handoffs got it, signed with the secret the screen showed.
    await expect.poll(() => receiver.received.length, { timeout: 30_000, interval: 250 }).toBe(1);
    expect(receiver.received[0]!.verified).toBe(true);
    expect(JSON.parse(receiver.received[0]!.body)).toMatchObject({ type: 'handoff.requested', data: { runId, reason: 'lead_asked' } });
    await nav('Webhooks');
    await page.getByRole('button', { name: 'Deliveries' }).click();
    const deliveries = page.getByRole('list', { name: 'Deliveries' });
    await deliveries.getByText('handoff.requested').waitFor();
    expect(await deliveries.textContent()).toMatch(/delivered · 1 attempt · last answer 204/);
    await stack.expectAccessible(page, 'webhook deliveries');

    // Back with the agent: the lead's next message is answered again.
    stack.full.llm!.enqueue({ kind: 'text', content: 'Welcome back!' });
    await porto.says('Hello again');
    await expect.poll(() => porto.replies().at(-1), { timeout: 60_000, interval: 250 }).toBe('Welcome back!');
  });

  it('a reply Kommo refuses flags the thread; "Mark as handled" clears the flag', async () => {
    const refused = lead(1_000_002);
    stack.full.kommo.talks.addOn = false;
    try {
      stack.full.llm!.enqueue({ kind: 'text', content: 'Ten percent off this week.' });
      await refused.says('Any discounts?');
      await expect.poll(runOf.bind(null, 1_000_002), { timeout: 60_000, interval: 250 }).toEqual(expect.any(String));
      const runId = (await runOf(1_000_002))!;
      const notice = page.getByRole('complementary', { name: 'Needs you' }).getByRole('link', { name: /A reply did not reach the lead/ });
      await notice.waitFor({ timeout: 60_000 });
      await notice.click();
      await page.waitForURL(`**/#/orgs/${orgId}/conversations/${runId}`);
      await page.getByRole('heading', { level: 1, name: 'Lead 1000002' }).waitFor();
      const banner = page.getByRole('status', { name: 'Needs attention' });
      await banner.waitFor({ timeout: 15_000 });
      await stack.expectAccessible(page, 'thread needing attention');
      expect((await stack.full.admin.query(`select reason from public.run_attention where run_id = $1`, [runId])).rows).toEqual([{ reason: 'reply_failed' }]);

      await page.getByRole('button', { name: 'Mark as handled' }).click();
      await banner.waitFor({ state: 'detached', timeout: 15_000 });
      expect((await stack.full.admin.query(`select 1 from public.run_attention where run_id = $1`, [runId])).rowCount).toBe(0);
      await nav('Conversations');
      await page.getByLabel('Show').selectOption('attention');
      await page.getByText('No conversation matches.').waitFor({ timeout: 15_000 });
    } finally {
      stack.full.kommo.talks.addOn = true;
    }
  });

  it('the list is in order of latest activity and follows it live: a lead writing in the bottom thread moves it to the top, no reload, no polling', async () => {
    await nav('Conversations');
    const list = page.getByRole('list', { name: 'Conversations' });
    const titles = () => list.getByRole('heading').allTextContents();
    // Started 1000001, 1000003, 1000002; 1000001 had activity after 1000003 (the handoff, the resume, the answer).
    await expect.poll(titles, { timeout: 15_000 }).toEqual(['Lead 1000002', 'Lead 1000001', 'Lead 1000003']);
    await page.evaluate(() => Object.assign(globalThis, { sameDocument: true }));
    // Let the read that follows the stream's opening pass; from then on an idle list reads nothing.
    await page.waitForTimeout(1_500);
    const reads: string[] = [];
    const onRequest = (request: { url(): string }) => {
      if (request.url().includes('/conversations?')) reads.push(request.url());
    };
    page.on('request', onRequest);
    try {
      await page.waitForTimeout(6_000);
      expect(reads).toEqual([]);

      stack.full.llm!.enqueue({ kind: 'text', content: 'Sure, Sunday works.' });
      await other.says('Can I come on Sunday?');
      await expect.poll(titles, { timeout: 30_000, interval: 100 }).toEqual(['Lead 1000003', 'Lead 1000002', 'Lead 1000001']);
      await list.getByRole('listitem').first().getByText('Sure, Sunday works.').waitFor({ timeout: 30_000 });
      expect(reads.length).toBeGreaterThan(0);
      expect(await page.evaluate(() => (globalThis as { sameDocument?: boolean }).sameDocument)).toBe(true);
    } finally {
      page.off('request', onRequest);
    }
  });

  it('every new screen passes axe and fits 375 px; no CSP violation and no uncaught error on any page', async () => {
    const narrow = await (await stack.newContext(375)).newPage();
    await stack.signIn(narrow, owner);
    await narrow.getByRole('heading', { name: 'Agents', exact: true }).waitFor();
    const runId = (await runOf(1_000_001))!;
    const screens: Array<[string, string, string]> = [
      ['conversations', `#/orgs/${orgId}/conversations`, 'Conversations'],
      ['needs a person', `#/orgs/${orgId}/conversations?status=needs_person`, 'Conversations'],
      ['thread', `#/orgs/${orgId}/conversations/${runId}`, 'Lead 1000001'],
      ['webhooks', `#/orgs/${orgId}/webhooks`, 'Webhooks'],
    ];
    for (const [label, hash, heading] of screens) {
      await narrow.goto(`${stack.base}/${hash}`);
      await narrow.getByRole('heading', { level: 1, name: heading, exact: true }).waitFor();
      await stack.expectAccessible(narrow, `${label} at 375 px`);
    }
    await receiver.close();
    expect(stack.cspViolations).toEqual([]);
    expect(stack.pageErrors).toEqual([]);
  });
});
