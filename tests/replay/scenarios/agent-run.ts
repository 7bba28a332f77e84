import { startFakeKommo, type FakeKommo } from '../../../scripts/stack/crm-fakes/kommo.js';
import { createCrmConnection, crmSettingsFor, testCredentialStore } from '../../crm/support.js';
import { createAgent, createOrgWithMembers, createRun } from '../../support/db.js';
import { createTestAgentWorker } from '../../support/temporal.js';
import { agentRunWorkflowId } from '../../../workflows/task-queues.js';
import * as agentRunWorkflow from '../../../workflows/agent-run/index.js';
import type { ReplayScenario, ScenarioContext, ScenarioModule } from '../scenario.js';

async function startRun(ctx: ScenarioContext, input: string, tools: { allowed?: string[]; approval?: string[] } = {}): Promise<string> {
  const { orgId } = await createOrgWithMembers(ctx.admin, ['owner']);
  const agentId = await createAgent(ctx.admin, orgId, { model: 'openai/gpt-4o-mini', instructions: 'Replay fixture agent.' });
  if (tools.allowed || tools.approval) {
    await ctx.admin.query(`update public.agents set allowed_tools = $2, approval_tools = $3 where id = $1`, [agentId, tools.allowed ?? [], tools.approval ?? []]);
  }
  const runId = await createRun(ctx.admin, orgId, agentId, { input });
  const workflowId = agentRunWorkflowId(runId);
  await ctx.temporal.client.workflow.start('agentRun', { taskQueue: ctx.taskQueue, workflowId, args: [{ orgId, agentId, runId }] });
  return workflowId;
}

/** A person answers the run's pending approval through the workflow's update, as the API does. */
async function decide(ctx: ScenarioContext, workflowId: string, decision: 'approve' | 'reject'): Promise<void> {
  const runId = workflowId.slice('agent-run:'.length);
  const deadline = Date.now() + 20_000;
  let approval: { id: string; org_id: string } | undefined;
  while (!approval && Date.now() < deadline) {
    ({ rows: [approval] } = await ctx.admin.query<{ id: string; org_id: string }>(`select id, org_id from public.run_approvals where run_id = $1 and status = 'pending'`, [runId]));
    if (!approval) await new Promise((r) => setTimeout(r, 100));
  }
  if (!approval) throw new Error(`${workflowId} never asked for approval`);
  const { rows } = await ctx.admin.query(
    `insert into public.run_approval_responses (org_id, approval_id, author, decision, comment) values ($1, $2, gen_random_uuid(), $3, null) returning id`,
    [approval.org_id, approval.id, decision],
  );
  await ctx.temporal.client.workflow
    .getHandle(workflowId)
    .executeUpdate(agentRunWorkflow.decideApprovalUpdate, { args: [{ approvalId: approval.id, decision, responseId: rows[0].id as string }] });
}

const KOMMO_TOKEN = 'kommo-long-lived-replay-token';
let kommo: FakeKommo | undefined;

/**
 * A conversation bound to a lead's talk in the fake Kommo, started as the CRM intake starts one:
 * the run's thread is the lead, its reply target the talk, so answers are sent into the talk.
 */
async function startKommoConversation(ctx: ScenarioContext, opts: { responseDelaySeconds?: number; idleTimeoutSeconds: number }) {
  const { orgId } = await createOrgWithMembers(ctx.admin, ['owner']);
  const agentId = await createAgent(ctx.admin, orgId, { model: 'openai/gpt-4o-mini', instructions: 'Replay fixture agent.' });
  await ctx.admin.query(`update public.agents set response_delay_seconds = $2 where id = $1`, [agentId, opts.responseDelaySeconds ?? 0]);
  const connectionId = await createCrmConnection(ctx.admin, orgId, {
    provider: 'kommo',
    apiBaseUrl: kommo!.url,
    authKind: 'token',
    tokens: { accessToken: KOMMO_TOKEN, refreshToken: null, expiresAt: null },
  });
  // A lead of the fake's dataset, so a handoff's task has a lead to be created on.
  const leadId = 1_000_001;
  const talkId = kommo!.talks.addTalk({ leadId });
  const runId = await createRun(ctx.admin, orgId, agentId, { input: '' });
  await ctx.admin.query(`update public.agent_runs set thread_key = $2, reply_target = $3 where id = $1`, [
    runId,
    `crm:${connectionId}:${leadId}`,
    JSON.stringify({ provider: 'kommo', talkId: String(talkId), leadId: String(leadId), origin: 'telegram' }),
  ]);
  const workflowId = agentRunWorkflowId(runId);
  await ctx.temporal.client.workflow.start('agentRun', { taskQueue: ctx.taskQueue, workflowId, args: [{ orgId, agentId, runId, conversation: { idleTimeoutSeconds: opts.idleTimeoutSeconds } }] });
  /** The lead writes in the talk; the message reaches the run as the intake delivers it. */
  const says = async (text: string) => {
    kommo!.talks.addMessage(talkId, { type: 'incoming', text });
    const { rows } = await ctx.admin.query(`insert into public.conversation_messages (org_id, run_id, author, content) values ($1, $2, gen_random_uuid(), $3) returning id`, [orgId, runId, text]);
    await ctx.temporal.client.workflow.getHandle(workflowId).executeUpdate('postMessage', { args: [{ messageId: rows[0].id as string }] });
  };
  const replies = () => kommo!.talks.talks.get(talkId)!.messages.filter((m) => m.type === 'outgoing').map((m) => m.text);
  return { runId, workflowId, says, replies };
}

async function waitForEvent(ctx: ScenarioContext, runId: string, type: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if ((await ctx.admin.query(`select 1 from public.run_events where run_id = $1 and type = $2`, [runId, type])).rowCount) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`run ${runId} never wrote a ${type} event`);
}

/** The recorded history is only worth keeping if the lead saw exactly these replies. */
function expectReplies(actual: string[], expected: string[]): void {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) throw new Error(`the lead's talk holds ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
}

/** Waits for the run to close, whatever its outcome: the history is what we keep. */
async function settle(ctx: ScenarioContext, workflowId: string): Promise<string> {
  await ctx.temporal.client.workflow.getHandle(workflowId).result().catch(() => undefined);
  return workflowId;
}

export const scenarios: ReplayScenario[] = [
  {
    workflowType: 'agentRun',
    path: 'completed',
    description: 'the model answers at once; the run completes',
    async run(ctx) {
      ctx.llm.enqueue({ kind: 'text', content: 'Fixture answer', usage: { inputTokens: 12, outputTokens: 3 } });
      return settle(ctx, await startRun(ctx, 'Say hello'));
    },
  },
  {
    workflowType: 'agentRun',
    path: 'llm-429-retry',
    description: 'the provider rate-limits once (Retry-After 1 s), the retry succeeds',
    async run(ctx) {
      ctx.llm.enqueue({ kind: 'error', status: 429, retryAfter: '1', message: 'Rate limit reached' }, { kind: 'text', content: 'After the wait' });
      return settle(ctx, await startRun(ctx, 'Busy provider'));
    },
  },
  {
    workflowType: 'agentRun',
    path: 'llm-rejected',
    description: 'the provider rejects the request (400); the run fails without retrying',
    async run(ctx) {
      ctx.llm.enqueue({ kind: 'error', status: 400, message: 'The model `openai/gpt-4o-mini` does not exist' });
      return settle(ctx, await startRun(ctx, 'Bad model'));
    },
  },
  {
    workflowType: 'agentRun',
    path: 'tool-call',
    description: 'the model calls a tool (knowledge_search), gets its result and answers',
    async run(ctx) {
      ctx.llm.enqueue(
        { kind: 'tool_calls', calls: [{ id: 'call_1', name: 'knowledge_search', arguments: JSON.stringify({ query: 'pricing' }) }] },
        { kind: 'text', content: 'Here is what I found.' },
      );
      return settle(ctx, await startRun(ctx, 'Look it up', { allowed: ['knowledge_search'] }));
    },
  },
  {
    workflowType: 'agentRun',
    path: 'approval-approved',
    description: 'a tool that needs approval waits for a person, who approves; the tool runs',
    async run(ctx) {
      ctx.llm.enqueue(
        { kind: 'tool_calls', calls: [{ id: 'call_1', name: 'knowledge_search', arguments: JSON.stringify({ query: 'pricing' }) }] },
        { kind: 'text', content: 'Done.' },
      );
      const workflowId = await startRun(ctx, 'Ask first', { allowed: ['knowledge_search'], approval: ['knowledge_search'] });
      await decide(ctx, workflowId, 'approve');
      return settle(ctx, workflowId);
    },
  },
  {
    workflowType: 'agentRun',
    path: 'approval-rejected',
    description: 'a person rejects the tool call; the model is told and answers without it',
    async run(ctx) {
      ctx.llm.enqueue(
        { kind: 'tool_calls', calls: [{ id: 'call_1', name: 'knowledge_search', arguments: JSON.stringify({ query: 'pricing' }) }] },
        { kind: 'text', content: 'Understood, I will not.' },
      );
      const workflowId = await startRun(ctx, 'Ask first', { allowed: ['knowledge_search'], approval: ['knowledge_search'] });
      await decide(ctx, workflowId, 'reject');
      return settle(ctx, workflowId);
    },
  },
  {
    workflowType: 'agentRun',
    path: 'follow-up-timer',
    description: 'the model schedules a follow-up; the durable timer fires and the run resumes',
    async run(ctx) {
      ctx.llm.enqueue(
        { kind: 'tool_calls', calls: [{ id: 'call_1', name: 'schedule_follow_up', arguments: JSON.stringify({ delay_seconds: 1 }) }] },
        { kind: 'text', content: 'Followed up.' },
      );
      return settle(ctx, await startRun(ctx, 'Follow up in a second', { allowed: ['schedule_follow_up'] }));
    },
  },
  {
    workflowType: 'agentRun',
    path: 'follow-up-resumed',
    description: 'the model schedules a follow-up for tomorrow; a person resumes it at once',
    async run(ctx) {
      ctx.llm.enqueue(
        { kind: 'tool_calls', calls: [{ id: 'call_1', name: 'schedule_follow_up', arguments: JSON.stringify({ delay_seconds: 86_400 }) }] },
        { kind: 'text', content: 'Checked back early.' },
      );
      const workflowId = await startRun(ctx, 'Follow up tomorrow', { allowed: ['schedule_follow_up'] });
      const runId = workflowId.slice('agent-run:'.length);
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        const { rows } = await ctx.admin.query(`select status from public.agent_runs where id = $1`, [runId]);
        if (rows[0]?.status === 'sleeping') break;
        await new Promise((r) => setTimeout(r, 100));
      }
      // The update as the API sends it; looked up by name so this module also loads against
      // a checkout from before the update existed (when recording legacy fixtures).
      await ctx.temporal.client.workflow.getHandle(workflowId).executeUpdate('resumeFollowUp');
      return settle(ctx, workflowId);
    },
  },
  {
    workflowType: 'agentRun',
    path: 'cancelled',
    description: 'the run is cancelled while the model is thinking',
    async run(ctx) {
      ctx.llm.enqueue({ kind: 'text', content: 'Too late', delayMs: 10_000 });
      const before = ctx.llm.requests.length;
      const workflowId = await startRun(ctx, 'Slow model');
      const deadline = Date.now() + 20_000;
      while (ctx.llm.requests.length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      await ctx.temporal.client.workflow.getHandle(workflowId).cancel();
      return settle(ctx, workflowId);
    },
  },
  {
    workflowType: 'agentRun',
    path: 'conversation-lead-memory',
    description: "a CRM lead's conversation: one message, one answer, the idle timeout ends it and the lead's memory is written",
    async run(ctx) {
      const { orgId } = await createOrgWithMembers(ctx.admin, ['owner']);
      const agentId = await createAgent(ctx.admin, orgId, { model: 'openai/gpt-4o-mini', instructions: 'Replay fixture agent.' });
      const { rows: connections } = await ctx.admin.query<{ id: string }>(
        `insert into public.crm_connections (org_id, provider, name, auth_kind, status) values ($1, 'kommo', 'Replay', 'token', 'active') returning id`,
        [orgId],
      );
      const runId = await createRun(ctx.admin, orgId, agentId, { input: '' });
      await ctx.admin.query(`update public.agent_runs set thread_key = $2 where id = $1`, [runId, `crm:${connections[0]!.id}:replay-lead`]);
      ctx.llm.enqueue({ kind: 'text', content: 'Fixture answer' }, { kind: 'text', content: 'The lead asked for prices.' });
      const workflowId = agentRunWorkflowId(runId);
      await ctx.temporal.client.workflow.start('agentRun', { taskQueue: ctx.taskQueue, workflowId, args: [{ orgId, agentId, runId, conversation: { idleTimeoutSeconds: 1 } }] });
      const { rows } = await ctx.admin.query(`insert into public.conversation_messages (org_id, run_id, author, content) values ($1, $2, gen_random_uuid(), 'Prices?') returning id`, [orgId, runId]);
      await ctx.temporal.client.workflow.getHandle(workflowId).executeUpdate('postMessage', { args: [{ messageId: rows[0].id as string }] });
      return settle(ctx, workflowId);
    },
  },
  {
    workflowType: 'agentRun',
    path: 'conversation-kommo-delayed-burst',
    description: 'a Kommo lead writes twice within the response delay; one reply answers both, sent into the talk, and the memory is written',
    async run(ctx) {
      ctx.llm.enqueue({ kind: 'text', content: 'The blue one is 40 EUR and in stock.' }, { kind: 'text', content: 'The lead asked about the blue one.' });
      const lead = await startKommoConversation(ctx, { responseDelaySeconds: 2, idleTimeoutSeconds: 2 });
      await lead.says('Hi!');
      await lead.says('How much is the blue one?');
      await settle(ctx, lead.workflowId);
      expectReplies(lead.replies(), ['The blue one is 40 EUR and in stock.']);
      return lead.workflowId;
    },
  },
  {
    workflowType: 'agentRun',
    path: 'conversation-handoff-resumed',
    description: 'a Kommo lead asks for a person: the conversation is handed off (task in Kommo, no reply); a member resumes it and the next message is answered into the talk',
    async run(ctx) {
      ctx.llm.enqueue({ kind: 'text', content: 'Welcome back, how can I help?' }, { kind: 'text', content: 'The lead wanted a person, then came back.' });
      const lead = await startKommoConversation(ctx, { idleTimeoutSeconds: 5 });
      const tasksBefore = kommo!.tasks.length;
      await lead.says('Can I talk to a real person?');
      await waitForEvent(ctx, lead.runId, 'reply.held');
      const tasks = kommo!.tasks.slice(tasksBefore).map((t) => t.text);
      if (tasks.length !== 1 || !tasks[0]!.includes('the lead asked for a person')) throw new Error(`expected one handoff task in Kommo, got ${JSON.stringify(tasks)}`);
      const { resumed } = await ctx.temporal.client.workflow.getHandle(lead.workflowId).executeUpdate(agentRunWorkflow.resumeConversationUpdate);
      if (!resumed) throw new Error('the handoff was not running when the member resumed');
      await lead.says('Actually, the bot is fine.');
      await settle(ctx, lead.workflowId);
      expectReplies(lead.replies(), ['Welcome back, how can I help?']);
      return lead.workflowId;
    },
  },
];

export async function startWorkers(ctx: ScenarioContext) {
  kommo = await startFakeKommo({ dataset: { leads: 5 }, rateLimitPerSecond: null });
  kommo.addLongLivedToken(KOMMO_TOKEN);
  const credentials = testCredentialStore(ctx.pool, crmSettingsFor({ kommo }));
  return [await createTestAgentWorker({ temporal: ctx.temporal, pool: ctx.pool, llmBaseUrl: ctx.llm.url, taskQueue: ctx.taskQueue, credentials })];
}

export async function close() {
  await kommo?.close();
}

// Checked against the shape the recorder expects.
void ({ scenarios, startWorkers, close } satisfies ScenarioModule);
