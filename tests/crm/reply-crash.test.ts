import { sandboxEcho } from '../../scripts/stack/sandbox-llm.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kommoChatWebhookBody } from '../../scripts/stack/crm-fakes/kommo-talks.js';
import type { App } from '../../api/app.js';
import { signUserToken } from '../support/auth.js';
import { createOrgWithMembers } from '../support/db.js';
import { startFullTestApp, type FullTestApp } from '../support/full-app.js';
import { connectKommoByToken, createCrmConnection, testKeySpec } from './support.js';

const crashWorkerPath = fileURLToPath(new URL('./crash-worker.ts', import.meta.url));
const echoOf = sandboxEcho;

/**
 * The worst moment for a duplicate: Kommo has stored the reply in the talk, and the worker dies
 * before it hears the 202 (so before the ledger says `sent` and before the activity completes).
 * The retry on a new worker must read the talk back and find its message instead of sending again.
 */
describe('a worker SIGKILLed after Kommo accepted the reply leaves one message in the talk', { timeout: 240_000 }, () => {
  let full: FullTestApp;
  let app: App;
  let admin: pg.Pool;
  let child: ChildProcess | undefined;
  let orgId: string;
  let connectionId: string;
  let webhookPath: string;

  beforeAll(async () => {
    full = await startFullTestApp({ agentWorker: 'later', kommoDataset: { leads: 10 } });
    ({ app, admin } = full);
    const org = await createOrgWithMembers(admin, ['owner', 'admin']);
    orgId = org.orgId;
    ({ connectionId, webhookPath } = await connectKommoByToken(admin, orgId, full.kommo));
    const agent = await app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgId}/agents`,
      headers: { authorization: `Bearer ${await signUserToken(org.userWithRole('admin'))}` },
      payload: { name: 'Crash replies', model: 'sandbox/echo', crmConnectionId: connectionId, triggers: [{ event: 'incoming_message' }] },
    });
    expect(agent.statusCode, agent.body).toBe(201);
  });

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    full.kommo.talks.onTalkMessageStored = null;
    await full?.close();
  });

  it('the retry reads the talk back, finds its own message and records it as sent without a second send', async () => {
    // The agent worker runs in a child process on the API's queue.
    child = spawn(process.execPath, ['--import', 'tsx', crashWorkerPath], {
      env: { ...process.env, CRM_CRASH_MODE: 'agent', CRM_CRASH_TASK_QUEUE: full.taskQueue, CRM_CRASH_LLM_URL: full.llm!.url, CRM_TEST_KEY_SPEC: testKeySpec },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const proc = child;
    await new Promise<void>((resolve, reject) => {
      proc.stdout!.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('crm-crash-worker ready')) resolve();
      });
      proc.once('exit', (code, signal) => reject(new Error(`crash worker exited early (${code ?? signal})`)));
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => proc.once('exit', (_code, signal) => resolve(signal)));
    // Kommo stores our message, then the worker dies before the answer reaches it.
    full.kommo.talks.onTalkMessageStored = (_talk, message) => {
      if (message.type === 'outgoing') proc.kill('SIGKILL');
    };

    const leadId = 1_000_005;
    const talkId = full.kommo.talks.addTalk({ leadId });
    const text = 'Is the warranty two years?';
    full.kommo.talks.addMessage(talkId, { type: 'incoming', text });
    const body = kommoChatWebhookBody({ leadId, talkId, text, accountId: full.kommo.accountId });
    const requestsBefore = full.kommo.apiRequests().length;
    const res = await app.inject({
      method: 'POST',
      url: webhookPath,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: body,
    });
    expect(res.statusCode, res.body).toBe(200);

    expect(await exited).toBe('SIGKILL');
    full.kommo.talks.onTalkMessageStored = null;
    const run = (await admin.query<{ id: string }>(`select id from public.agent_runs where org_id = $1 and thread_key = $2`, [orgId, `crm:${connectionId}:${leadId}`])).rows[0]!;
    // Kommo holds the reply; our ledger only knows it was attempted.
    expect((await admin.query(`select status from public.crm_reply_sends where run_id = $1`, [run.id])).rows).toEqual([{ status: 'attempted' }]);

    await full.startAgentWorker();
    // The retry comes after the dead attempt's start-to-close timeout (1 minute).
    await expect
      .poll(async () => (await admin.query(`select part, status, route, external_id from public.crm_reply_sends where run_id = $1`, [run.id])).rows, { timeout: 150_000, interval: 500 })
      .toEqual([{ part: 0, status: 'sent', route: 'kommo_talk', external_id: expect.any(String) }]);

    const outgoing = full.kommo.talks.talks.get(talkId)!.messages.filter((m) => m.type === 'outgoing');
    expect(outgoing.map((m) => m.text)).toEqual([echoOf(text)]);
    // The ledger holds the id of the message the dead worker sent, found by reading the talk back.
    const ledger = (await admin.query<{ external_id: string }>(`select external_id from public.crm_reply_sends where run_id = $1`, [run.id])).rows[0]!;
    expect(ledger.external_id).toBe(outgoing[0]!.id);
    const after = full.kommo.apiRequests().slice(requestsBefore);
    expect(after.filter((r) => r.method === 'POST' && r.path === `/api/v4/talks/${talkId}/send_message`)).toHaveLength(1);
    expect(after.filter((r) => r.method === 'GET' && r.path === `/api/v4/talks/${talkId}/messages`).length).toBeGreaterThanOrEqual(1);
    const events = (await admin.query<{ type: string }>(`select type from public.run_events where run_id = $1`, [run.id])).rows.map((e) => e.type);
    expect(events).not.toContain('reply_failed');
  });
});

describe('a worker SIGKILLed after HubSpot stored the reply leaves one message in the thread', { timeout: 240_000 }, () => {
  let full: FullTestApp;
  let child: ChildProcess | undefined;
  let orgId: string;
  let connectionId: string;
  const token = `pat-na1-${randomUUID()}`;
  // The fake's first owner is user 601, whose agent actor is A-1601.
  const sender = 'A-1601';

  beforeAll(async () => {
    full = await startFullTestApp({ agentWorker: 'later', hubspotDataset: { deals: 2, contacts: 5 } });
    full.hubspot.addPrivateAppToken(token);
    const org = await createOrgWithMembers(full.admin, ['owner', 'admin']);
    orgId = org.orgId;
    connectionId = await createCrmConnection(full.admin, orgId, { provider: 'hubspot', apiBaseUrl: full.hubspot.url, authKind: 'token', tokens: { accessToken: token, refreshToken: null, expiresAt: null } });
    const adminToken = await signUserToken(org.userWithRole('admin'));
    const settings = await full.app.inject({
      method: 'PUT',
      url: `/v1/orgs/${orgId}/crm/connections/${connectionId}/messaging-settings`,
      headers: { authorization: `Bearer ${adminToken}` },
      payload: { hubspotSenderActorId: sender },
    });
    expect(settings.statusCode, settings.body).toBe(200);
    const agent = await full.app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgId}/agents`,
      headers: { authorization: `Bearer ${adminToken}` },
      payload: { name: 'Crash replies HubSpot', model: 'sandbox/echo', crmConnectionId: connectionId, triggers: [{ event: 'incoming_message' }] },
    });
    expect(agent.statusCode, agent.body).toBe(201);
  });

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (full) full.hubspot.onThreadMessageStored = null;
    await full?.close();
  });

  it('the retry lists the thread, finds its own message from the dedicated user and does not post again', async () => {
    child = spawn(process.execPath, ['--import', 'tsx', crashWorkerPath], {
      env: { ...process.env, CRM_CRASH_MODE: 'agent', CRM_CRASH_TASK_QUEUE: full.taskQueue, CRM_CRASH_LLM_URL: full.llm!.url, CRM_TEST_KEY_SPEC: testKeySpec },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const proc = child;
    await new Promise<void>((resolve, reject) => {
      proc.stdout!.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('crm-crash-worker ready')) resolve();
      });
      proc.once('exit', (code, signal) => reject(new Error(`crash worker exited early (${code ?? signal})`)));
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => proc.once('exit', (_code, signal) => resolve(signal)));
    const thread = full.hubspot.addConversationThread({ contactId: 30_004 });
    // HubSpot stores the posted reply, then the worker dies before the 201 reaches it.
    full.hubspot.onThreadMessageStored = (threadId) => {
      if (threadId === thread) proc.kill('SIGKILL');
    };
    const text = 'Do you have a free trial?';
    const messageId = full.hubspot.addConversationMessage(thread, { direction: 'INCOMING', text });
    const path = `/v1/webhooks/crm/hubspot/${connectionId}`;
    const delivery = full.hubspot.webhookDelivery(`https://api.example.test${path}`, [{ eventId: 710_001, subscriptionType: 'conversation.newMessage', objectId: thread, messageId, messageType: 'MESSAGE' }]);
    const requestsBefore = full.hubspot.apiRequests().length;
    expect((await full.app.inject({ method: 'POST', url: path, headers: delivery.headers, payload: delivery.body })).statusCode).toBe(200);

    expect(await exited).toBe('SIGKILL');
    full.hubspot.onThreadMessageStored = null;
    const run = (await full.admin.query<{ id: string }>(`select id from public.agent_runs where org_id = $1 and thread_key = $2`, [orgId, `crm:${connectionId}:30004`])).rows[0]!;
    expect((await full.admin.query(`select status from public.crm_reply_sends where run_id = $1`, [run.id])).rows).toEqual([{ status: 'attempted' }]);

    await full.startAgentWorker();
    await expect
      .poll(async () => (await full.admin.query(`select status, route, external_id from public.crm_reply_sends where run_id = $1`, [run.id])).rows, { timeout: 150_000, interval: 500 })
      .toEqual([{ status: 'sent', route: 'hubspot_thread', external_id: expect.any(String) }]);
    const outgoing = full.hubspot.threadMessages(thread).filter((m) => m.direction === 'OUTGOING');
    expect(outgoing.map((m) => [m.text, m.senderActorId])).toEqual([[echoOf(text), sender]]);
    const ledger = (await full.admin.query<{ external_id: string }>(`select external_id from public.crm_reply_sends where run_id = $1`, [run.id])).rows[0]!;
    expect(ledger.external_id).toBe(outgoing[0]!.id);
    const posts = full.hubspot.apiRequests().slice(requestsBefore).filter((r) => r.method === 'POST' && r.path === `/conversations/v3/conversations/threads/${thread}/messages`);
    expect(posts).toHaveLength(1);
  });
});
