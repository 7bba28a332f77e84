/**
 * The team's rules, per agent, on the real stack: the API stores and validates them, the CRM
 * intake and the conversation workflow obey them, and what the lead sees in the Kommo fake's
 * talk (the replies the agent sent) is the observable result.
 */
import { kommoChatWebhookBody } from '../../scripts/stack/crm-fakes/kommo-talks.js';
import { sandboxEcho } from '../../scripts/stack/sandbox-llm.js';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../api/app.js';
import { signUserToken } from '../support/auth.js';
import { createOrgWithMembers } from '../support/db.js';
import { startFullTestApp, type FullTestApp } from '../support/full-app.js';
import { connectKommoByToken, intakeSettled } from './support.js';

const echoOf = sandboxEcho;

describe("the team's rules decide whether, when and where the agent answers a lead", { timeout: 180_000 }, () => {
  let full: FullTestApp;
  let app: App;
  let admin: pg.Pool;
  let orgId: string;
  let adminToken: string;
  let connectionId: string;
  let webhookPath: string;
  let nextLead = 1_000_001;

  beforeAll(async () => {
    full = await startFullTestApp({ agentWorker: true, kommoDataset: { leads: 20 } });
    ({ app, admin } = full);
    const org = await createOrgWithMembers(admin, ['owner', 'admin']);
    orgId = org.orgId;
    adminToken = await signUserToken(org.userWithRole('admin'));
    ({ connectionId, webhookPath } = await connectKommoByToken(admin, orgId, full.kommo));
  });

  afterAll(async () => {
    await full?.close();
  });

  const auth = () => ({ authorization: `Bearer ${adminToken}` });
  /** Creates the agent under test; the earlier tests' agents stop listening, so only this one answers the connection's leads. */
  const createAgent = async (fields: Record<string, unknown> = {}, { alone = true } = {}): Promise<string> => {
    if (alone) await admin.query(`update public.agents set triggers = '[]'::jsonb where org_id = $1`, [orgId]);
    const res = await app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgId}/agents`,
      headers: auth(),
      payload: { name: `Rules ${randomUUID().slice(0, 6)}`, model: 'sandbox/echo', crmConnectionId: connectionId, triggers: [{ event: 'incoming_message' }], ...fields },
    });
    expect(res.statusCode, res.body).toBe(201);
    return res.json().id;
  };
  const patchAgent = (agentId: string, payload: Record<string, unknown>) =>
    app.inject({ method: 'PATCH', url: `/v1/orgs/${orgId}/agents/${agentId}`, headers: auth(), payload });

  /** A lead with its own talk in the Kommo fake; `says` delivers its chat message as Kommo's webhook does. */
  const newLead = () => {
    const leadId = nextLead++;
    const talkId = full.kommo.talks.addTalk({ leadId });
    const says = async (text: string) => {
      full.kommo.talks.addMessage(talkId, { type: 'incoming', text });
      const body = kommoChatWebhookBody({ leadId, talkId, text, accountId: full.kommo.accountId });
      const res = await app.inject({
        method: 'POST',
        url: webhookPath,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: body,
      });
      expect(res.statusCode, res.body).toBe(200);
    };
    const replies = () => full.kommo.talks.talks.get(talkId)!.messages.filter((m) => m.type === 'outgoing').map((m) => m.text);
    return { leadId, talkId, says, replies };
  };
  const conversationOf = async (agentId: string, leadId: number) =>
    (await admin.query<{ id: string; status: string }>(`select id, status from public.agent_runs where agent_id = $1 and thread_key = $2`, [agentId, `crm:${connectionId}:${leadId}`])).rows;
  const eventsOf = async (runId: string) =>
    (await admin.query<{ type: string; payload: Record<string, unknown> }>(`select type, payload from public.run_events where run_id = $1 order by seq`, [runId])).rows;
  const messagesOf = async (runId: string) =>
    (await admin.query<{ content: string }>(`select content from public.conversation_messages where run_id = $1 order by created_at`, [runId])).rows.map((r) => r.content);

  describe('status', () => {
    it('a paused agent answers API starts with 409 agent-paused, and status takes only active or paused', async () => {
      const agentId = await createAgent();
      expect((await app.inject({ method: 'GET', url: `/v1/orgs/${orgId}/agents/${agentId}`, headers: auth() })).json().status).toBe('active');
      const bad = await patchAgent(agentId, { status: 'sleeping' });
      expect(bad.statusCode).toBe(400);
      expect(bad.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(bad.json().errors.map((e: { path: string }) => e.path)).toContain('body.status');

      expect((await patchAgent(agentId, { status: 'paused' })).json().status).toBe('paused');
      const start = await app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/agents/${agentId}/runs`, headers: auth(), payload: { input: 'Hello' } });
      expect(start.statusCode, start.body).toBe(409);
      expect(start.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(start.json().type).toMatch(/\/problems\/agent-paused$/);
      const chat = await app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/agents/${agentId}/conversations/app-thread/messages`, headers: auth(), payload: { content: 'Hi' } });
      expect(chat.statusCode, chat.body).toBe(409);
      expect(chat.json().type).toMatch(/\/problems\/agent-paused$/);
      expect((await admin.query(`select 1 from public.agent_runs where agent_id = $1`, [agentId])).rowCount).toBe(0);

      await patchAgent(agentId, { status: 'active' });
      const again = await app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/agents/${agentId}/runs`, headers: auth(), payload: { input: 'Hello' } });
      expect(again.statusCode, again.body).toBe(201);
    });

    it('a paused agent starts no conversation from a lead message; an open one records the message and stops replying', async () => {
      const agentId = await createAgent();
      const lead = newLead();
      await lead.says('Is the blue one in stock?');
      await expect.poll(lead.replies, { timeout: 60_000, interval: 250 }).toEqual([echoOf('Is the blue one in stock?')]);
      const [run] = await conversationOf(agentId, lead.leadId);

      await patchAgent(agentId, { status: 'paused' });
      await lead.says('And the red one?');
      await intakeSettled(admin, connectionId);
      await expect.poll(async () => (await eventsOf(run!.id)).filter((e) => e.type === 'reply.held'), { timeout: 30_000, interval: 250 }).toEqual([
        expect.objectContaining({ payload: expect.objectContaining({ reason: 'paused' }) }),
      ]);
      expect(await messagesOf(run!.id)).toEqual(['Is the blue one in stock?', 'And the red one?']);
      expect((await eventsOf(run!.id)).filter((e) => e.type === 'user.message')).toHaveLength(2);
      expect(lead.replies()).toEqual([echoOf('Is the blue one in stock?')]);

      const stranger = newLead();
      await stranger.says('Hello?');
      await intakeSettled(admin, connectionId);
      expect(await conversationOf(agentId, stranger.leadId)).toEqual([]);

      // Active again: the next message is answered in the same conversation.
      await patchAgent(agentId, { status: 'active' });
      await lead.says('Any news?');
      await expect.poll(lead.replies, { timeout: 60_000, interval: 250 }).toEqual([echoOf('Is the blue one in stock?'), echoOf('Any news?')]);
      expect(await conversationOf(agentId, lead.leadId)).toHaveLength(1);
    });

    it('a paused agent starts no run when a lead enters its trigger stage; an active one with the same trigger does', async () => {
      const agentId = await createAgent({ status: 'paused', triggers: [{ event: 'lead_stage_entered', stageId: '70012' }] });
      const control = await createAgent({ triggers: [{ event: 'lead_stage_entered', stageId: '70012' }] }, { alone: false });
      const form = new URLSearchParams({
        'leads[status][0][id]': '1000002',
        'leads[status][0][status_id]': '70012',
        'leads[status][0][pipeline_id]': '7001',
        'account[id]': '31000001',
      });
      full.kommo.updateLead(1_000_002, { status_id: 70012, pipeline_id: 7001 });
      const res = await app.inject({
        method: 'POST',
        url: webhookPath,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: form.toString(),
      });
      expect(res.statusCode, res.body).toBe(200);
      await intakeSettled(admin, connectionId);
      expect((await admin.query(`select 1 from public.agent_runs where agent_id = $1`, [agentId])).rowCount).toBe(0);
      expect((await admin.query(`select 1 from public.agent_trigger_firings where agent_id = $1`, [agentId])).rowCount).toBe(0);
      expect((await admin.query(`select 1 from public.agent_runs where agent_id = $1`, [control])).rowCount).toBe(1);
    });
  });

  describe('response delay', () => {
    it('a burst of messages, each restarting the wait, gets one reply that read all of them', async () => {
      const agentId = await createAgent({ responseDelaySeconds: 4 });
      const lead = newLead();
      const burst = ['Hi', 'I need a quote', 'for 20 chairs'];
      const llmCallsBefore = full.llm!.requests.length;
      for (const text of burst) {
        await lead.says(text);
        await intakeSettled(admin, connectionId);
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
      await expect.poll(lead.replies, { timeout: 60_000, interval: 250 }).toEqual([echoOf('for 20 chairs')]);
      // One model call for the whole burst, and it was shown all three messages.
      const calls = full.llm!.requests.slice(llmCallsBefore).filter((r) => r.path === '/v1/chat/completions');
      const asked = calls.filter((r) => JSON.stringify(r.body).includes('for 20 chairs'));
      expect(asked).toHaveLength(1);
      const userTexts = (asked[0]!.body as { messages: { role: string; content: string | null }[] }).messages.filter((m) => m.role === 'user').map((m) => m.content);
      for (const text of burst) expect(userTexts.some((c) => c?.includes(text))).toBe(true);
      const [run] = await conversationOf(agentId, lead.leadId);
      expect((await eventsOf(run!.id)).filter((e) => e.type === 'llm.completed')).toHaveLength(1);
      // Nothing more follows.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      expect(lead.replies()).toEqual([echoOf('for 20 chairs')]);
    });

    it('a negative delay answers 400 naming the field', async () => {
      const agentId = await createAgent();
      const bad = await patchAgent(agentId, { responseDelaySeconds: -5 });
      expect(bad.statusCode).toBe(400);
      expect(bad.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(bad.json().errors).toEqual([expect.objectContaining({ path: 'body.responseDelaySeconds' })]);
      expect((await patchAgent(agentId, { responseDelaySeconds: 30 })).json().responseDelaySeconds).toBe(30);
    });
  });

  describe('human handoff', () => {
    let memberToken: string;
    beforeAll(async () => {
      const { rows } = await admin.query<{ user_id: string }>(`select user_id from public.organization_members where org_id = $1 and role = 'admin' limit 1`, [orgId]);
      memberToken = await signUserToken(rows[0]!.user_id);
    });

    /** The salesperson writes in the lead's talk; Kommo reports it as an outgoing message. */
    const salespersonWrites = async (lead: ReturnType<typeof newLead>, text: string, messageId: string = randomUUID()) => {
      full.kommo.talks.addMessage(lead.talkId, { type: 'outgoing', text, author: 'internal' });
      const body = kommoChatWebhookBody({ leadId: lead.leadId, talkId: lead.talkId, text, type: 'outgoing', id: messageId, accountId: full.kommo.accountId });
      const res = await app.inject({
        method: 'POST',
        url: webhookPath,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: body,
      });
      expect(res.statusCode, res.body).toBe(200);
      await intakeSettled(admin, connectionId);
    };
    const runView = async (runId: string) => (await app.inject({ method: 'GET', url: `/v1/orgs/${orgId}/runs/${runId}`, headers: { authorization: `Bearer ${memberToken}` } })).json();
    const tasksFor = (leadId: number) => full.kommo.tasks.filter((t) => t.entityId === leadId);
    const handoffEvents = async (runId: string) =>
      (await admin.query<{ payload: Record<string, unknown> }>(`select payload from public.org_events where org_id = $1 and type = 'handoff.requested' and payload->>'runId' = $2`, [orgId, runId])).rows.map((r) => r.payload);

    it('a salesperson writing in the thread hands it to people: one CRM task for the responsible user, no answers, until a member resumes', async () => {
      await createAgent();
      const lead = newLead();
      full.kommo.updateLead(lead.leadId, { responsible_user_id: 4242 });
      await lead.says('Do you ship to Porto?');
      await expect.poll(lead.replies, { timeout: 60_000, interval: 250 }).toEqual([echoOf('Do you ship to Porto?')]);
      const [run] = await conversationOf((await admin.query<{ agent_id: string }>(`select agent_id from public.agent_runs where thread_key = $1`, [`crm:${connectionId}:${lead.leadId}`])).rows[0]!.agent_id, lead.leadId);
      expect((await runView(run!.id)).handoff).toBeNull();

      // Kommo also reports our own reply as an outgoing message: that is no handoff.
      const sent = await admin.query<{ external_id: string }>(`select external_id from public.crm_reply_sends where run_id = $1`, [run!.id]);
      await salespersonWrites(lead, echoOf('Do you ship to Porto?'), sent.rows[0]!.external_id);
      expect((await runView(run!.id)).handoff).toBeNull();
      expect(tasksFor(lead.leadId)).toEqual([]);

      await salespersonWrites(lead, 'Hi, this is Ana from sales, yes we do!');
      await expect.poll(async () => (await runView(run!.id)).handoff, { timeout: 30_000, interval: 250 }).toEqual({ reason: 'salesperson_replied', since: expect.any(String), until: expect.any(String) });
      const view = await runView(run!.id);
      expect(new Date(view.handoff.until).getTime() - new Date(view.handoff.since).getTime()).toBe(24 * 3600 * 1000);
      expect(tasksFor(lead.leadId)).toEqual([expect.objectContaining({ entityType: 'leads', responsibleUserId: 4242 })]);
      await expect.poll(() => handoffEvents(run!.id), { timeout: 10_000 }).toEqual([expect.objectContaining({ reason: 'salesperson_replied', agentId: expect.any(String) })]);

      await lead.says('Great, how long does it take?');
      await expect.poll(async () => (await eventsOf(run!.id)).filter((e) => e.type === 'reply.held'), { timeout: 30_000, interval: 250 }).toEqual([
        expect.objectContaining({ payload: expect.objectContaining({ reason: 'handoff' }) }),
      ]);
      expect(lead.replies()).toEqual([echoOf('Do you ship to Porto?'), echoOf('Do you ship to Porto?'), 'Hi, this is Ana from sales, yes we do!']);
      expect(tasksFor(lead.leadId)).toHaveLength(1);

      const resume = await app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/runs/${run!.id}/handoff/resume`, headers: { authorization: `Bearer ${memberToken}` } });
      expect(resume.statusCode, resume.body).toBe(200);
      expect(resume.json().handoff).toBeNull();
      const again = await app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/runs/${run!.id}/handoff/resume`, headers: { authorization: `Bearer ${memberToken}` } });
      expect(again.statusCode).toBe(409);
      expect(again.json().type).toMatch(/\/problems\/not-handed-off$/);

      await lead.says('Thanks! One more question');
      await expect.poll(() => lead.replies().at(-1), { timeout: 60_000, interval: 250 }).toBe(echoOf('Thanks! One more question'));
    });

    it('a lead asking for a person hands off at once (not answered); after handoffMinutes the agent answers again', async () => {
      const agentId = await createAgent({ handoffMinutes: 30 });
      const lead = newLead();
      await lead.says('Can I talk to a human please?');
      await intakeSettled(admin, connectionId);
      await expect.poll(async () => (await conversationOf(agentId, lead.leadId)).length, { timeout: 30_000 }).toBe(1);
      const run = (await conversationOf(agentId, lead.leadId))[0]!;
      await expect.poll(async () => (await runView(run.id)).handoff?.reason, { timeout: 30_000, interval: 250 }).toBe('lead_asked');
      const view = await runView(run.id);
      expect(new Date(view.handoff.until).getTime() - new Date(view.handoff.since).getTime()).toBe(30 * 60 * 1000);
      await expect.poll(() => tasksFor(lead.leadId), { timeout: 10_000 }).toHaveLength(1);
      expect(lead.replies()).toEqual([]);
      await expect
        .poll(async () => (await eventsOf(run.id)).map((e) => e.type), { timeout: 10_000, interval: 250 })
        .toEqual(['run.started', 'user.message', 'handoff.requested', 'reply.held']);
      expect((await eventsOf(run.id)).map((e) => e.type)).not.toContain('llm.completed');

      // The handoff runs out (its end moved into the past, as if 30 minutes went by).
      await admin.query(`update public.agent_runs set handoff_until = now() - interval '1 second', handoff_at = now() - interval '30 minutes' where id = $1`, [run.id]);
      await lead.says('Hello again');
      await expect.poll(lead.replies, { timeout: 60_000, interval: 250 }).toEqual([echoOf('Hello again')]);
      expect(tasksFor(lead.leadId)).toHaveLength(1);
    });

    it('the agent calling handoff_to_human hands off after its last answer, with one CRM task', async () => {
      const agentId = await createAgent({ allowedTools: ['handoff_to_human'] });
      full.llm!.setReplyFor(
        (body) => body.messages.at(-1)?.role === 'user' && String(body.messages.at(-1)?.content).includes('refund'),
        { kind: 'tool_calls', calls: [{ name: 'handoff_to_human', arguments: JSON.stringify({ reason: 'refund request' }) }] },
      );
      const lead = newLead();
      await lead.says('I want a refund for order 77');
      await expect.poll(lead.replies, { timeout: 60_000, interval: 250 }).toEqual([echoOf('I want a refund for order 77')]);
      const [run] = await conversationOf(agentId, lead.leadId);
      await expect.poll(async () => (await runView(run!.id)).handoff?.reason, { timeout: 30_000, interval: 250 }).toBe('agent_requested');
      expect(tasksFor(lead.leadId)).toHaveLength(1);
      const tool = (await eventsOf(run!.id)).find((e) => e.type === 'tool.completed');
      expect(tool?.payload).toMatchObject({ name: 'handoff_to_human', result: { handedOff: true } });

      await lead.says('Hello?');
      await expect.poll(async () => (await eventsOf(run!.id)).filter((e) => e.type === 'reply.held').length, { timeout: 30_000, interval: 250 }).toBe(1);
      expect(lead.replies()).toHaveLength(1);
    });
  });

  describe('stage scoping', () => {
    it('answers leads in its reply stages only; others are recorded and not answered; unknown stages answer 400', async () => {
      const inside = newLead();
      const outside = newLead();
      full.kommo.updateLead(inside.leadId, { pipeline_id: 7001, status_id: 70012 });
      full.kommo.updateLead(outside.leadId, { pipeline_id: 7001, status_id: 70013 });
      const sync = await app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/crm/connections/${connectionId}/syncs`, headers: auth(), payload: { mode: 'full' } });
      expect(sync.statusCode, sync.body).toBe(202);
      await full.temporal.client.workflow.getHandle(sync.json().workflowId).result();

      const agentId = await createAgent();
      const unknownStage = await patchAgent(agentId, { replyStages: [{ stageId: '99999' }] });
      expect(unknownStage.statusCode).toBe(400);
      expect(unknownStage.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(unknownStage.json().errors).toEqual([{ path: 'body.replyStages.0.stageId', message: 'unknown stage' }]);
      const unknownPipeline = await patchAgent(agentId, { replyStages: [{ stageId: '70012' }, { pipelineId: '123', stageId: '70012' }] });
      expect(unknownPipeline.json().errors).toEqual([{ path: 'body.replyStages.1.pipelineId', message: 'unknown pipeline' }]);
      const scoped = await patchAgent(agentId, { replyStages: [{ pipelineId: '7001', stageId: '70012' }] });
      expect(scoped.statusCode, scoped.body).toBe(200);
      expect(scoped.json().replyStages).toEqual([{ pipelineId: '7001', stageId: '70012' }]);

      await inside.says('Is the offer still on?');
      await outside.says('Is the offer still on?');
      await expect.poll(inside.replies, { timeout: 60_000, interval: 250 }).toEqual([echoOf('Is the offer still on?')]);
      const [run] = await conversationOf(agentId, outside.leadId);
      await expect.poll(async () => (await eventsOf(run!.id)).filter((e) => e.type === 'reply.held').map((e) => e.payload.reason), { timeout: 30_000, interval: 250 }).toEqual([
        'outside_stages',
      ]);
      expect(await messagesOf(run!.id)).toEqual(['Is the offer still on?']);
      expect(outside.replies()).toEqual([]);

      // Everywhere again: the same lead is answered.
      expect((await patchAgent(agentId, { replyStages: null })).json().replyStages).toBeNull();
      await outside.says('Hello?');
      await expect.poll(outside.replies, { timeout: 60_000, interval: 250 }).toEqual([echoOf('Hello?')]);
    });
  });

  describe('working hours', () => {
    const days = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
    const hhmm = (d: Date) => d.toISOString().slice(11, 16);

    it('a message outside the hours is recorded and answered when they open (a durable timer); with outsideHours answer, at once', async () => {
      // Hours that open at the next minute boundary at least 20 s away, in UTC.
      const opens = new Date(Math.ceil((Date.now() + 20_000) / 60_000) * 60_000);
      const closes = new Date(opens.getTime() + 30 * 60_000);
      const interval = { day: days[opens.getUTCDay()], start: hhmm(opens), end: hhmm(closes) < hhmm(opens) ? '24:00' : hhmm(closes) };
      const agentId = await createAgent({ workingHours: { timeZone: 'UTC', intervals: [interval] } });
      const lead = newLead();
      await lead.says('Are you open?');
      await expect.poll(async () => (await conversationOf(agentId, lead.leadId)).length, { timeout: 30_000 }).toBe(1);
      const run = (await conversationOf(agentId, lead.leadId))[0]!;
      await expect.poll(async () => (await eventsOf(run.id)).filter((e) => e.type === 'reply.deferred').map((e) => e.payload.reason), { timeout: 30_000, interval: 250 }).toEqual([
        'outside_hours',
      ]);
      expect(lead.replies()).toEqual([]);
      await expect.poll(lead.replies, { timeout: 150_000, interval: 500 }).toEqual([echoOf('Are you open?')]);
      expect(Date.now()).toBeGreaterThanOrEqual(opens.getTime());

      // The same closed hours, set to answer anyway.
      const eager = await createAgent({ workingHours: { timeZone: 'UTC', outsideHours: 'answer', intervals: [{ day: days[(opens.getUTCDay() + 3) % 7], start: '09:00', end: '10:00' }] } });
      const other = newLead();
      await other.says('Anyone?');
      await expect.poll(other.replies, { timeout: 60_000, interval: 250 }).toEqual([echoOf('Anyone?')]);
      expect((await conversationOf(eager, other.leadId))).toHaveLength(1);
    });

    it('overlapping hours and an unknown time zone answer 400 naming the field', async () => {
      const agentId = await createAgent();
      const overlap = await patchAgent(agentId, {
        workingHours: { timeZone: 'Europe/Madrid', intervals: [{ day: 'mon', start: '09:00', end: '13:00' }, { day: 'mon', start: '12:00', end: '18:00' }] },
      });
      expect(overlap.statusCode).toBe(400);
      expect(overlap.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(overlap.json().errors.map((e: { path: string }) => e.path)).toEqual(['body.workingHours.intervals.1']);
      const zone = await patchAgent(agentId, { workingHours: { timeZone: 'Mars/Olympus', intervals: [{ day: 'mon', start: '09:00', end: '13:00' }] } });
      expect(zone.json().errors.map((e: { path: string }) => e.path)).toEqual(['body.workingHours.timeZone']);
      const fine = await patchAgent(agentId, { workingHours: { timeZone: 'Europe/Madrid', intervals: [{ day: 'mon', start: '09:00', end: '13:00' }] } });
      expect(fine.json().workingHours).toEqual({ timeZone: 'Europe/Madrid', outsideHours: 'defer', intervals: [{ day: 'mon', start: '09:00', end: '13:00' }] });
    });
  });
});
