import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../api/app.js';
import { sha256Hex } from '../../lib/crypto.js';
import { signUserToken } from '../support/auth.js';
import { createOrgWithMembers } from '../support/db.js';
import { startFullTestApp, type FullTestApp } from '../support/full-app.js';
import { createCrmConnection } from './support.js';

/** Kommo's form-encoded webhook body for a lead's chat message in a talk, as Kommo sends it. */
const kommoMessage = (leadId: number, talkId: number, text: string) => {
  const form = new URLSearchParams();
  form.set('message[add][0][id]', randomUUID());
  form.set('message[add][0][type]', 'incoming');
  form.set('message[add][0][entity_type]', 'lead');
  form.set('message[add][0][entity_id]', String(leadId));
  form.set('message[add][0][talk_id]', String(talkId));
  form.set('message[add][0][origin]', 'telegram');
  form.set('message[add][0][text]', text);
  form.set('account[id]', '31000001');
  return form.toString();
};

const echoOf = (text: string) => `[sandbox LLM] You said: "${text}"`;

describe("the agent's answer goes into the lead's Kommo talk, once", { timeout: 180_000 }, () => {
  let full: FullTestApp;
  let app: App;
  let admin: pg.Pool;
  let orgId: string;
  let adminToken: string;
  let connectionId: string;
  const secret = `kommo-secret-${randomUUID()}`;
  const token = `kommo-${randomUUID()}`;

  beforeAll(async () => {
    full = await startFullTestApp({ agentWorker: true, kommoDataset: { leads: 10 } });
    ({ app, admin } = full);
    full.kommo.addLongLivedToken(token);
    const org = await createOrgWithMembers(admin, ['owner', 'admin']);
    orgId = org.orgId;
    adminToken = await signUserToken(org.userWithRole('admin'));
    connectionId = await createCrmConnection(admin, orgId, {
      provider: 'kommo',
      apiBaseUrl: full.kommo.url,
      authKind: 'token',
      tokens: { accessToken: token, refreshToken: null, expiresAt: null },
      webhookSecretHash: sha256Hex(secret),
    });
    const agent = await app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgId}/agents`,
      headers: { authorization: `Bearer ${adminToken}` },
      payload: { name: 'Replies', model: 'sandbox/echo', crmConnectionId: connectionId, triggers: [{ event: 'incoming_message' }] },
    });
    expect(agent.statusCode, agent.body).toBe(201);
  });

  afterAll(async () => {
    await full?.close();
  });

  const deliver = async (body: string) => {
    const res = await app.inject({
      method: 'POST',
      url: `/v1/webhooks/crm/kommo/${connectionId}?secret=${secret}`,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: body,
    });
    expect(res.statusCode, res.body).toBe(200);
  };
  const runOf = async (leadId: number) =>
    (await admin.query<{ id: string; status: string }>(`select id, status from public.agent_runs where org_id = $1 and thread_key = $2`, [orgId, `crm:${connectionId}:${leadId}`]))
      .rows[0];
  const outgoing = (talkId: number) => full.kommo.talks.talks.get(talkId)!.messages.filter((m) => m.type === 'outgoing').map((m) => m.text);
  // The durable events GET /runs/:id/events streams (its SSE never ends, so the rows are read here).
  const eventsOf = async (runId: string) =>
    (await admin.query<{ type: string; payload: Record<string, unknown> }>(`select type, payload from public.run_events where run_id = $1 order by seq`, [runId])).rows;

  it('a lead message arriving by webhook produces exactly one message with the answer in the talk, recorded as sent', async () => {
    const leadId = 1_000_003;
    const talkId = full.kommo.talks.addTalk({ leadId });
    full.kommo.talks.addMessage(talkId, { type: 'incoming', text: 'Do you deliver on Saturdays?' });
    await deliver(kommoMessage(leadId, talkId, 'Do you deliver on Saturdays?'));

    await expect.poll(() => outgoing(talkId), { timeout: 60_000, interval: 250 }).toEqual([echoOf('Do you deliver on Saturdays?')]);
    const run = (await runOf(leadId))!;
    await expect
      .poll(async () => (await admin.query(`select answer_seq, part, status, route, external_id from public.crm_reply_sends where run_id = $1`, [run.id])).rows, { timeout: 10_000 })
      .toEqual([{ answer_seq: expect.any(Number), part: 0, status: 'sent', route: 'kommo_talk', external_id: expect.any(String) }]);
    // Nothing more arrives: the send is not repeated.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(outgoing(talkId)).toEqual([echoOf('Do you deliver on Saturdays?')]);
    expect((await eventsOf(run.id)).map((e) => e.type)).not.toContain('reply_failed');
  });

  it('a 4xx from Kommo ends as a reply_failed run event and the conversation goes on', async () => {
    const leadId = 1_000_004;
    const talkId = full.kommo.talks.addTalk({ leadId });
    full.kommo.talks.talks.get(talkId)!.closed = true;
    await deliver(kommoMessage(leadId, talkId, 'Still there?'));

    await expect.poll(async () => (await runOf(leadId))?.id, { timeout: 60_000 }).toEqual(expect.any(String));
    const run = (await runOf(leadId))!;
    await expect.poll(async () => (await eventsOf(run.id)).filter((e) => e.type === 'reply_failed'), { timeout: 60_000, interval: 250 }).toEqual([
      expect.objectContaining({ type: 'reply_failed', payload: expect.objectContaining({ provider: 'kommo', status: 422 }) }),
    ]);
    expect(outgoing(talkId)).toEqual([]);
    await expect.poll(async () => (await runOf(leadId))!.status, { timeout: 10_000 }).toBe('sleeping');
    const { rows } = await admin.query(`select status from public.crm_reply_sends where run_id = $1`, [run.id]);
    expect(rows).toEqual([{ status: 'attempted' }]);
  });
});
