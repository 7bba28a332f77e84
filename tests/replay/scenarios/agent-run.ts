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
];

export async function startWorkers(ctx: ScenarioContext) {
  return [await createTestAgentWorker({ temporal: ctx.temporal, pool: ctx.pool, llmBaseUrl: ctx.llm.url, taskQueue: ctx.taskQueue })];
}

// Checked against the shape the recorder expects.
void ({ scenarios, startWorkers } satisfies ScenarioModule);
