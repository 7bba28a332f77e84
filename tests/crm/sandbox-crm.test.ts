import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandboxCrm, type SandboxCrm } from '../../scripts/stack/sandbox-crm.js';
import { bindSandboxCrm, sandboxWebhookUrl } from '../../scripts/stack/sandbox-crm-seed.js';
import { createAgent, createOrgWithMembers } from '../support/db.js';
import { startFullTestApp, type FullTestApp } from '../support/full-app.js';
import { testKeyring } from './support.js';

/**
 * The sandbox CRM of `npm run dev` (scripts/stack/sandbox-crm.ts, bound by sandbox-crm-seed.ts as
 * scripts/dev.ts binds it), against the real API over HTTP, a real worker, Postgres and Temporal:
 * a newcomer's lead message reaches the agent through Kommo's webhook and the answer lands in the
 * lead's thread, read back through the sandbox's own routes.
 */
describe('the sandbox CRM of npm run dev', { timeout: 120_000 }, () => {
  let full: FullTestApp;
  let sandbox: SandboxCrm;
  let orgId: string;

  beforeAll(async () => {
    full = await startFullTestApp({ agentWorker: true });
    const apiUrl = await full.app.listen({ host: '127.0.0.1', port: 0 });
    const org = await createOrgWithMembers(full.admin, ['owner']);
    orgId = org.orgId;
    const agentId = await createAgent(full.admin, orgId, { name: 'Sandbox SDR', model: 'sandbox/echo' });
    const binding = { connectionId: randomUUID(), webhookSecret: `sandbox-${randomUUID()}` };
    const accessToken = `sandbox-token-${randomUUID()}`;
    sandbox = await startSandboxCrm({ accessToken, webhookUrl: sandboxWebhookUrl(apiUrl, binding) });
    await bindSandboxCrm(full.admin, { ...binding, orgId, agentId, sandboxUrl: sandbox.url, accessToken, keyring: testKeyring, responseDelaySeconds: 1 });
  });

  afterAll(async () => {
    await sandbox?.close();
    await full?.close();
  });

  const messagesUrl = (leadId: number | string) => `${sandbox.url}/sandbox/leads/${leadId}/messages`;
  const post = (url: string, body: unknown) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const thread = async (leadId: number) => (await (await fetch(messagesUrl(leadId))).json()) as Array<Record<string, unknown>>;

  it('a lead message gets the agent reply in the thread, oldest first, in the documented shape', async () => {
    const leadId = sandbox.demoLeadId;
    const written = await post(messagesUrl(leadId), { text: 'Hi! Do you ship to Berlin?' });
    expect(written.status).toBe(201);
    expect(await written.json()).toMatchObject({ direction: 'in', author: 'lead', text: 'Hi! Do you ship to Berlin?', webhook: { delivered: true, status: 200 } });

    await expect.poll(async () => (await thread(leadId)).length, { timeout: 60_000, interval: 250 }).toBe(2);
    const messages = await thread(leadId);
    expect(messages).toEqual([
      { id: expect.any(String), direction: 'in', author: 'lead', text: 'Hi! Do you ship to Berlin?', createdAt: expect.any(String) },
      { id: expect.any(String), direction: 'out', author: 'agent', text: '[sandbox LLM] You said: "Hi! Do you ship to Berlin?"', createdAt: expect.any(String) },
    ]);
    expect(Date.parse(messages[1]!.createdAt as string)).toBeGreaterThanOrEqual(Date.parse(messages[0]!.createdAt as string));
    // The reply went through Kommo's API as the platform calls it: send_message on the lead's talk.
    expect(sandbox.kommo.apiRequests().filter((r) => r.method === 'POST' && /^\/api\/v4\/talks\/\d+\/send_message$/.test(r.path)).map((r) => r.status)).toEqual([202]);
  });

  it('a salesperson writes in the thread; unknown leads are 404 and bad bodies 400', async () => {
    const leadId = sandbox.demoLeadId;
    const written = await post(`${sandbox.url}/sandbox/leads/${leadId}/manager-messages`, { text: 'I will call you at 5.' });
    expect(written.status).toBe(201);
    expect((await thread(leadId)).at(-1)).toEqual({ id: expect.any(String), direction: 'out', author: 'manager', text: 'I will call you at 5.', createdAt: expect.any(String) });
    // The real webhook reached the API: the lead's open conversation is handed to people.
    const deadline = Date.now() + 30_000;
    let handedOff: { handoff_reason: string | null }[] = [];
    while (Date.now() < deadline) {
      ({ rows: handedOff } = await full.admin.query(`select handoff_reason from public.agent_runs where org_id = $1 and handoff_until > now()`, [orgId]));
      if (handedOff.length > 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(handedOff).toEqual([{ handoff_reason: 'salesperson_replied' }]);
    expect((await post(messagesUrl(999_999_999), { text: 'hello' })).status).toBe(404);
    expect((await fetch(messagesUrl(999_999_999))).status).toBe(404);
    expect((await post(messagesUrl(leadId), { text: '' })).status).toBe(400);
    expect((await post(messagesUrl(leadId), { text: 'hi', extra: 1 })).status).toBe(400);
  });
});
