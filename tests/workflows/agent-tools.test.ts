import { randomUUID } from 'node:crypto';
import { WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import type pg from 'pg';
import { z } from 'zod';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createToolRegistry } from '../../activities/tools/builtin.js';
import { defineTool, type AgentTool } from '../../activities/tools/registry.js';
import type { FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { startAgentTestStack, type AgentTestStack } from '../support/agent-stack.js';
import { createAgent, createOrgWithMembers, createRun } from '../support/db.js';
import { seedKnowledge } from '../support/knowledge.js';
import { testDataConverter, type TestTemporal } from '../support/temporal.js';
import type { Payload } from '@temporalio/common';
import { agentRunWorkflowId } from '../../workflows/task-queues.js';
import { decideApprovalUpdate, postMessageUpdate, runStateQuery, agentRun, type AgentRunInput } from '../../workflows/agent-run/index.js';
import { RunStatusSearchAttribute } from '../../workflows/search-attributes.js';

/** A side-effecting test tool: counts real executions, and fails once right after its effect committed. */
const effects = {
  executed: 0,
  failAfterEffect: new Set<string>(),
  /** Runs inside the effect, as another session would look at the database during a CRM call. */
  observe: undefined as ((idempotencyKey: string, orgId: string) => Promise<void>) | undefined,
};
const recordNote = defineTool({
  name: 'test_record_note',
  description: 'Records a note (test tool with a side effect)',
  kind: 'effect',
  parameters: z.strictObject({ text: z.string().min(1) }),
  async execute(args, ctx) {
    const { result } = await ctx.runEffectOnce(async () => {
      await effects.observe?.(ctx.idempotencyKey, ctx.orgId);
      effects.executed += 1;
      return { noteId: `note-${effects.executed}`, length: args.text.length };
    });
    if (effects.failAfterEffect.delete(ctx.runId)) throw new Error('worker lost its connection right after the effect');
    return result;
  },
}) as AgentTool;

describe('agentRun: tools, approvals, timers, budgets', () => {
  let stack: AgentTestStack;
  let temporal: TestTemporal;
  let llm: FakeLlmServer;
  let admin: pg.Pool;
  let taskQueue: string;

  beforeAll(async () => {
    stack = await startAgentTestStack('agent-tools-test', {
      worker: {
        tools: createToolRegistry([recordNote]),
        // USD per million tokens: 1 input token costs 0.000002, 1 output token 0.00001.
        prices: { 'test/*': { inputPerMillion: 2, outputPerMillion: 10 } },
      },
    });
    ({ temporal, llm, admin, taskQueue } = stack);
  });

  afterAll(async () => {
    await stack?.close();
  });

  beforeEach(() => llm.reset());

  type AgentConfig = { allowedTools?: string[]; approvalTools?: string[]; maxSteps?: number; runTokenBudget?: number; approvalTimeoutSeconds?: number };

  async function newRun(input: string, config: AgentConfig = {}, org?: string) {
    const orgId = org ?? (await createOrgWithMembers(admin, ['owner'])).orgId;
    const agentId = await createAgent(admin, orgId, { model: 'test/model', instructions: 'You are a sales agent.' });
    await admin.query(
      `update public.agents set allowed_tools = $2, approval_tools = $3, max_steps = $4, run_token_budget = $5, approval_timeout_seconds = $6 where id = $1`,
      [agentId, config.allowedTools ?? [], config.approvalTools ?? [], config.maxSteps ?? 10, config.runTokenBudget ?? null, config.approvalTimeoutSeconds ?? 3600],
    );
    const runId = await createRun(admin, orgId, agentId, { input });
    return { orgId, agentId, runId };
  }

  function start(ids: { orgId: string; agentId: string; runId: string }, extra: Partial<AgentRunInput> = {}) {
    return temporal.client.workflow.start(agentRun, {
      taskQueue,
      workflowId: agentRunWorkflowId(ids.runId),
      args: [{ ...ids, ...extra }],
    });
  }

  async function events(runId: string) {
    const { rows } = await admin.query<{ seq: number; type: string; payload: Record<string, unknown> }>(
      `select seq, type, payload from public.run_events where run_id = $1 order by seq`,
      [runId],
    );
    return rows;
  }

  async function runRow(runId: string) {
    const { rows } = await admin.query(`select * from public.agent_runs where id = $1`, [runId]);
    return rows[0];
  }

  async function waitFor<T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 20_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const pendingApproval = (runId: string) =>
    waitFor('a pending approval', async () => {
      const { rows } = await admin.query(`select * from public.run_approvals where run_id = $1 and status = 'pending'`, [runId]);
      return rows[0] as { id: string; org_id: string; kind: string; tool_name: string } | undefined;
    });

  async function respond(approval: { id: string; org_id: string }, decision: 'approve' | 'reject', comment?: string) {
    const author = randomUUID();
    const { rows } = await admin.query(
      `insert into public.run_approval_responses (org_id, approval_id, author, decision, comment) values ($1, $2, $3, $4, $5) returning id`,
      [approval.org_id, approval.id, author, decision, comment ?? null],
    );
    return { responseId: rows[0].id as string, author };
  }

  it('calls a tool the model asks for, feeds the result back and finishes with the final answer', async () => {
    const ids = await newRun('What do we charge for the Pro plan?', { allowedTools: ['knowledge_search'] });
    await seedKnowledge({ admin, app: stack.pool }, ids.orgId, 'Pricing', 'The Pro plan costs 49 EUR per seat and month.');
    await seedKnowledge({ admin, app: stack.pool }, ids.orgId, 'Holidays', 'Office closed in August.');
    llm.enqueue(
      { kind: 'tool_calls', calls: [{ id: 'call_1', name: 'knowledge_search', arguments: JSON.stringify({ query: 'Pro plan' }) }], usage: { inputTokens: 100, outputTokens: 10 } },
      { kind: 'text', content: 'Pro costs 49 EUR per seat.', usage: { inputTokens: 150, outputTokens: 8 } },
    );

    const result = await (await start(ids)).result();

    expect(result).toEqual({ status: 'completed', inputTokens: 250, outputTokens: 18 });
    expect((await events(ids.runId)).map((e) => `${e.seq}:${e.type}`)).toEqual([
      '1:run.started',
      '2:llm.completed',
      '3:tool.completed',
      '4:llm.completed',
      '5:run.completed',
    ]);
    const first = llm.requests[0]!.body as { tools: Array<{ function: { name: string; parameters: { properties: Record<string, unknown> } } }> };
    expect(first.tools.map((t) => t.function.name)).toEqual(['knowledge_search']);
    expect(first.tools[0]!.function.parameters.properties).toHaveProperty('query');
    const second = llm.requests[1]!.body as { messages: Array<{ role: string; content: string | null; tool_call_id?: string }> };
    const toolMessage = second.messages.find((m) => m.role === 'tool')!;
    expect(toolMessage.tool_call_id).toBe('call_1');
    expect(toolMessage.content).toContain('Pricing');
    expect(toolMessage.content).toContain('49 EUR per seat');
    expect(toolMessage.content).toContain('[Pricing, passage 1]');
    expect(toolMessage.content).not.toContain('Holidays');
    const row = await runRow(ids.runId);
    expect(row).toMatchObject({ status: 'completed', output: 'Pro costs 49 EUR per seat.', llm_calls: 2, input_tokens: 250, output_tokens: 18 });

    const description = await temporal.client.workflow.getHandle(agentRunWorkflowId(ids.runId)).describe();
    expect(description.typedSearchAttributes.get(RunStatusSearchAttribute)).toBe('completed');
  });

  it('keeps tool arguments, tool results and approval comments out of the Temporal history', async () => {
    const ids = await newRun('CANARY-INPUT', { allowedTools: ['knowledge_search', 'request_human_input'] });
    await seedKnowledge({ admin, app: stack.pool }, ids.orgId, 'CANARY-DOC', 'canarybody secret');
    llm.enqueue(
      { kind: 'tool_calls', calls: [{ name: 'knowledge_search', arguments: JSON.stringify({ query: 'canarybody' }) }] },
      { kind: 'tool_calls', calls: [{ name: 'request_human_input', arguments: JSON.stringify({ question: 'CANARY-QUESTION' }) }] },
      { kind: 'text', content: 'CANARY-ANSWER' },
    );
    const handle = await start(ids);
    const approval = await pendingApproval(ids.runId);
    const { responseId } = await respond(approval, 'approve', 'CANARY-COMMENT');
    await handle.executeUpdate(decideApprovalUpdate, { args: [{ approvalId: approval.id, decision: 'approve', responseId }] });
    await handle.result();

    // Payloads are encrypted at rest; decrypt them to see what the workflow itself carries.
    const history = await handle.fetchHistory();
    const [codec] = testDataConverter.payloadCodecs!;
    const encoded = (history.events ?? []).flatMap((e) => [
      ...(e.workflowExecutionStartedEventAttributes?.input?.payloads ?? []),
      ...(e.activityTaskScheduledEventAttributes?.input?.payloads ?? []),
      ...(e.activityTaskCompletedEventAttributes?.result?.payloads ?? []),
      ...(e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.args?.payloads ?? []),
      ...(e.workflowExecutionUpdateCompletedEventAttributes?.outcome?.success?.payloads ?? []),
      ...(e.workflowExecutionCompletedEventAttributes?.result?.payloads ?? []),
    ]) as Payload[];
    const decoded = JSON.stringify((await codec!.decode(encoded)).map((p) => Buffer.from(p.data ?? new Uint8Array()).toString('utf8')));
    expect(decoded).toContain(ids.runId);
    expect(decoded).toContain(responseId);
    for (const canary of ['CANARY-INPUT', 'CANARY-DOC', 'canarybody', 'CANARY-QUESTION', 'CANARY-COMMENT', 'CANARY-ANSWER']) {
      expect(decoded).not.toContain(canary);
    }
  });

  it('runs read tools as local activities (an agent turn is 7 history events) and effect tools as activities of their own, keyed by the result seq', async () => {
    const ids = await newRun('Look it up twice, then note it', { allowedTools: ['knowledge_search', 'test_record_note'] });
    llm.enqueue(
      { kind: 'tool_calls', calls: [{ name: 'knowledge_search', arguments: JSON.stringify({ query: 'pricing' }) }] },
      { kind: 'tool_calls', calls: [{ name: 'knowledge_search', arguments: JSON.stringify({ query: 'terms' }) }] },
      { kind: 'tool_calls', calls: [{ name: 'test_record_note', arguments: JSON.stringify({ text: 'noted' }) }] },
      { kind: 'text', content: 'Done.' },
    );
    const handle = await start(ids);
    expect((await handle.result()).status).toBe('completed');

    const history = (await handle.fetchHistory()).events ?? [];
    const scheduled = history.flatMap((e, i) => {
      const a = e.activityTaskScheduledEventAttributes;
      return a ? [{ at: i, type: a.activityType?.name, id: a.activityId }] : [];
    });
    // Seqs: 1 run.started, 2 llm, 3 tool, 4 llm, 5 tool, 6 llm, 7 tool (the effect), 8 llm, 9 run.completed.
    expect(scheduled.map((s) => s.type)).toEqual(['callLlm', 'callLlm', 'callLlm', 'executeTool', 'callLlm']);
    expect(scheduled[3]!.id).toBe('tool-7');
    // The second turn (the first one also records the patch marker once): the LLM activity's
    // scheduled, started and completed events, a workflow task's three, and the tool's marker.
    expect(scheduled[2]!.at - scheduled[1]!.at).toBe(7);
    const toolMarkers = history.filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity');
    expect(toolMarkers.length).toBe(2 + 2); // two read tools, plus startRun and finishRun
    expect((await events(ids.runId)).filter((e) => e.type === 'tool.completed').map((e) => e.seq)).toEqual([3, 5, 7]);
    // The effect's ledger key is the one a regular tool activity always had.
    const { rows } = await admin.query(`select idempotency_key from public.effect_ledger where run_id = $1`, [ids.runId]);
    expect(rows).toEqual([{ idempotency_key: `${agentRunWorkflowId(ids.runId)}:tool-7` }]);
  });

  it('answers invalid arguments and unknown tools with a tool error the model can react to', async () => {
    const ids = await newRun('Search please', { allowedTools: ['knowledge_search'] });
    llm.enqueue(
      {
        kind: 'tool_calls',
        calls: [
          { id: 'bad_args', name: 'knowledge_search', arguments: JSON.stringify({ query: '', limit: 99 }) },
          { id: 'not_json', name: 'knowledge_search', arguments: '{query:' },
          { id: 'unknown', name: 'crm_delete_everything', arguments: '{}' },
        ],
      },
      { kind: 'text', content: 'Sorry, I could not search.' },
    );

    await (await start(ids)).result();

    const toolEvents = (await events(ids.runId)).filter((e) => e.type === 'tool.completed');
    expect(toolEvents.map((e) => e.payload.toolCallId)).toEqual(['bad_args', 'not_json', 'unknown']);
    expect(toolEvents[0]!.payload.error).toMatch(/Invalid arguments for knowledge_search: query: .*limit: /);
    expect(toolEvents[1]!.payload.error).toMatch(/not valid JSON/);
    expect(toolEvents[2]!.payload.error).toMatch(/Unknown tool "crm_delete_everything".*knowledge_search/);
    const second = llm.requests[1]!.body as { messages: Array<{ role: string; content: string; tool_call_id?: string }> };
    expect(second.messages.filter((m) => m.role === 'tool').map((m) => m.tool_call_id)).toEqual(['bad_args', 'not_json', 'unknown']);
    expect((await runRow(ids.runId)).status).toBe('completed');
  });

  it('fails the run with StepLimitReached when the model never stops calling tools', async () => {
    const ids = await newRun('Loop forever', { allowedTools: ['knowledge_search'], maxSteps: 2 });
    llm.setReplyFor(() => true, { kind: 'tool_calls', calls: [{ name: 'knowledge_search', arguments: '{"query":"x"}' }] });

    const failure = await (await start(ids)).result().catch((e: unknown) => e);

    expect(failure).toBeInstanceOf(WorkflowFailedError);
    expect(llm.requests).toHaveLength(2);
    expect((await runRow(ids.runId)).error).toMatchObject({ type: 'StepLimitReached' });
  });

  it('performs a side effect exactly once even when the activity fails right after it and is retried', async () => {
    const ids = await newRun('Write a note', { allowedTools: ['test_record_note'] });
    effects.failAfterEffect.add(ids.runId);
    const before = effects.executed;
    llm.enqueue({ kind: 'tool_calls', calls: [{ name: 'test_record_note', arguments: '{"text":"hello"}' }] }, { kind: 'text', content: 'Noted.' });

    await (await start(ids)).result();

    expect(effects.executed - before).toBe(1);
    const { rows } = await admin.query(`select idempotency_key, result from public.effect_ledger where run_id = $1`, [ids.runId]);
    expect(rows).toHaveLength(1);
    expect(rows[0].idempotency_key).toBe(`agent-run:${ids.runId}:tool-3`);
    const tool = (await events(ids.runId)).find((e) => e.type === 'tool.completed')!;
    expect(tool.payload.result).toEqual(rows[0].result);
  });

  it('holds no transaction across the external call: the claim commits before it, the result after', async () => {
    const ids = await newRun('Write a note', { allowedTools: ['test_record_note'] });
    const seen: { claim: unknown; lockFree: boolean }[] = [];
    effects.observe = async (key, orgId) => {
      const claim = await admin.query(`select completed_at, lease_until > now() as leased from public.effect_ledger where org_id = $1 and idempotency_key = $2`, [orgId, key]);
      // The key's advisory lock is transaction-scoped: free here means no transaction holds it now.
      const client = await admin.connect();
      try {
        await client.query('begin');
        const lock = await client.query<{ ok: boolean }>(`select pg_try_advisory_xact_lock(hashtextextended($1, 0)) as ok`, [`effect:${orgId}:${key}`]);
        await client.query('rollback');
        seen.push({ claim: claim.rows, lockFree: lock.rows[0]!.ok });
      } finally {
        client.release();
      }
    };
    try {
      llm.enqueue({ kind: 'tool_calls', calls: [{ name: 'test_record_note', arguments: '{"text":"hello"}' }] }, { kind: 'text', content: 'Noted.' });
      expect((await (await start(ids)).result()).status).toBe('completed');
    } finally {
      effects.observe = undefined;
    }
    expect(seen).toEqual([{ claim: [{ completed_at: null, leased: true }], lockFree: true }]);
    const { rows } = await admin.query(`select completed_at is not null as completed, lease_until, result from public.effect_ledger where run_id = $1`, [ids.runId]);
    expect(rows).toEqual([{ completed: true, lease_until: null, result: expect.objectContaining({ noteId: expect.any(String) }) }]);
  });

  it('pauses a tool that needs approval, and runs it once approved', async () => {
    const ids = await newRun('Note it after approval', { allowedTools: ['test_record_note'], approvalTools: ['test_record_note'] });
    llm.enqueue({ kind: 'tool_calls', calls: [{ name: 'test_record_note', arguments: '{"text":"approved note"}' }] }, { kind: 'text', content: 'Done.' });
    const handle = await start(ids);

    const approval = await pendingApproval(ids.runId);
    expect(approval).toMatchObject({ kind: 'approval', tool_name: 'test_record_note' });
    expect((await runRow(ids.runId)).status).toBe('awaiting_approval');
    expect((await handle.query(runStateQuery)).pendingApprovals).toEqual([approval.id]);
    await waitFor('RunStatus awaiting_approval', async () =>
      (await handle.describe()).typedSearchAttributes.get(RunStatusSearchAttribute) === 'awaiting_approval');

    const { responseId, author } = await respond(approval, 'approve');
    const decided = await handle.executeUpdate(decideApprovalUpdate, { args: [{ approvalId: approval.id, decision: 'approve', responseId }] });
    expect(decided).toEqual({ approvalId: approval.id, status: 'approved' });

    // A second decision on the same approval is refused by the validator.
    const again = await handle
      .executeUpdate(decideApprovalUpdate, { args: [{ approvalId: approval.id, decision: 'reject', responseId }] })
      .catch((e: unknown) => e);
    expect(again).toBeInstanceOf(WorkflowUpdateFailedError);
    expect(String((again as WorkflowUpdateFailedError).cause?.message)).toMatch(/already approved/);

    await handle.result();
    const { rows } = await admin.query(`select status, decided_by from public.run_approvals where id = $1`, [approval.id]);
    expect(rows[0]).toEqual({ status: 'approved', decided_by: author });
    expect((await events(ids.runId)).map((e) => e.type)).toEqual([
      'run.started', 'llm.completed', 'approval.requested', 'approval.decided', 'tool.completed', 'llm.completed', 'run.completed',
    ]);
  });

  it('tells the model when a person rejects the action, with their comment, and does not perform it', async () => {
    const ids = await newRun('Note it', { allowedTools: ['test_record_note'], approvalTools: ['test_record_note'] });
    llm.enqueue({ kind: 'tool_calls', calls: [{ name: 'test_record_note', arguments: '{"text":"x"}' }] }, { kind: 'text', content: 'Understood.' });
    const before = effects.executed;
    const handle = await start(ids);

    const approval = await pendingApproval(ids.runId);
    const { responseId } = await respond(approval, 'reject', 'Not for this customer');
    await handle.executeUpdate(decideApprovalUpdate, { args: [{ approvalId: approval.id, decision: 'reject', responseId }] });
    await handle.result();

    expect(effects.executed).toBe(before);
    const second = llm.requests[1]!.body as { messages: Array<{ role: string; content: string }> };
    expect(second.messages.find((m) => m.role === 'tool')!.content).toMatch(/rejected.*Not for this customer/);
  });

  it('expires an approval nobody decides in time, visibly, and lets the model continue', async () => {
    const ids = await newRun('Note it', { allowedTools: ['test_record_note'], approvalTools: ['test_record_note'], approvalTimeoutSeconds: 1 });
    llm.enqueue({ kind: 'tool_calls', calls: [{ name: 'test_record_note', arguments: '{"text":"x"}' }] }, { kind: 'text', content: 'Nobody answered.' });
    const handle = await start(ids);
    await handle.result();

    const { rows } = await admin.query(`select status from public.run_approvals where run_id = $1`, [ids.runId]);
    expect(rows).toEqual([{ status: 'expired' }]);
    const decided = (await events(ids.runId)).find((e) => e.type === 'approval.decided')!;
    expect(decided.payload.status).toBe('expired');
    const second = llm.requests[1]!.body as { messages: Array<{ role: string; content: string }> };
    expect(second.messages.find((m) => m.role === 'tool')!.content).toMatch(/approval timeout/);
  });

  it('asks a person through request_human_input and gives the model their answer', async () => {
    const ids = await newRun('Ask the rep', { allowedTools: ['request_human_input'] });
    llm.enqueue({ kind: 'tool_calls', calls: [{ name: 'request_human_input', arguments: '{"question":"Which discount may I offer?"}' }] }, { kind: 'text', content: 'Offering 10%.' });
    const handle = await start(ids);

    const approval = await pendingApproval(ids.runId);
    expect(approval.kind).toBe('input');
    const requested = (await events(ids.runId)).find((e) => e.type === 'approval.requested')!;
    expect(requested.payload.arguments).toEqual({ question: 'Which discount may I offer?' });
    const { responseId } = await respond(approval, 'approve', 'At most 10%');
    await handle.executeUpdate(decideApprovalUpdate, { args: [{ approvalId: approval.id, decision: 'approve', responseId }] });
    await handle.result();

    const second = llm.requests[1]!.body as { messages: Array<{ role: string; content: string }> };
    expect(JSON.parse(second.messages.find((m) => m.role === 'tool')!.content)).toEqual({ answer: 'At most 10%' });
  });

  it('sleeps durably on schedule_follow_up (status sleeping) and resumes after the delay', async () => {
    const ids = await newRun('Check back later', { allowedTools: ['schedule_follow_up'] });
    llm.enqueue({ kind: 'tool_calls', calls: [{ name: 'schedule_follow_up', arguments: '{"delay_seconds":2,"reason":"check reply"}' }] }, { kind: 'text', content: 'Checked back.' });
    const handle = await start(ids);

    await waitFor('status sleeping', async () => (await runRow(ids.runId)).status === 'sleeping');
    expect((await handle.query(runStateQuery)).status).toBe('sleeping');
    await handle.result();

    expect(llm.requests[1]!.at - llm.requests[0]!.at).toBeGreaterThanOrEqual(2000);
    expect((await events(ids.runId)).map((e) => e.type)).toEqual(['run.started', 'llm.completed', 'tool.completed', 'follow_up.resumed', 'llm.completed', 'run.completed']);
  });

  it('cancelling a sleeping run cancels its follow-up timer and ends it cancelled', async () => {
    const ids = await newRun('Check back much later', { allowedTools: ['schedule_follow_up'] });
    llm.enqueue({ kind: 'tool_calls', calls: [{ name: 'schedule_follow_up', arguments: '{"delay_seconds":3600}' }] });
    const handle = await start(ids);
    await waitFor('status sleeping', async () => (await runRow(ids.runId)).status === 'sleeping');

    await handle.cancel();

    await waitFor('status cancelled', async () => (await runRow(ids.runId)).status === 'cancelled');
    expect(llm.requests).toHaveLength(1);
  });

  it('cancelling a run that waits for a person cancels the open approval, with no error and no output', async () => {
    const ids = await newRun('Ask before acting', { allowedTools: ['request_human_input'] });
    llm.enqueue({ kind: 'tool_calls', calls: [{ name: 'request_human_input', arguments: '{"question":"May I?"}' }] });
    const handle = await start(ids);
    const approval = await pendingApproval(ids.runId);

    await handle.cancel();

    const run = await waitFor('status cancelled', async () => {
      const row = await runRow(ids.runId);
      return row.status === 'cancelled' ? row : undefined;
    });
    expect(run).toMatchObject({ error: null, output: null });
    expect(run.completed_at).toBeInstanceOf(Date);
    const { rows } = await admin.query(`select status, decided_at from public.run_approvals where id = $1`, [approval.id]);
    expect(rows[0].status).toBe('cancelled');
    expect(rows[0].decided_at).toBeInstanceOf(Date);
    expect((await events(ids.runId)).map((e) => e.type)).toEqual(['run.started', 'llm.completed', 'approval.requested', 'run.cancelled']);
  });

  it('ends the run with RunBudgetExceeded once its token budget is spent, before calling the model again', async () => {
    const ids = await newRun('Expensive', { allowedTools: ['knowledge_search'], runTokenBudget: 100 });
    llm.enqueue({ kind: 'tool_calls', calls: [{ name: 'knowledge_search', arguments: '{"query":"x"}' }], usage: { inputTokens: 90, outputTokens: 20 } });

    const failure = await (await start(ids)).result().catch((e: unknown) => e);

    expect(failure).toBeInstanceOf(WorkflowFailedError);
    expect(llm.requests).toHaveLength(1);
    const row = await runRow(ids.runId);
    expect(row.status).toBe('failed');
    expect(row.error.type).toBe('RunBudgetExceeded');
    expect(row.error.message).toMatch(/110 tokens.*budget of 100/);
  });

  it("ends the run with OrgDailyQuotaExceeded when the org's daily quota is used up, and meters usage_daily", async () => {
    const { orgId } = await createOrgWithMembers(admin, ['owner']);
    await admin.query(`update public.organizations set daily_token_quota = 50 where id = $1`, [orgId]);
    const first = await newRun('first', {}, orgId);
    llm.enqueue({ kind: 'text', content: 'ok', usage: { inputTokens: 40, outputTokens: 20 } });
    await (await start(first)).result();

    const second = await newRun('second', {}, orgId);
    const failure = await (await start(second)).result().catch((e: unknown) => e);

    expect(failure).toBeInstanceOf(WorkflowFailedError);
    expect((await runRow(second.runId)).error.type).toBe('OrgDailyQuotaExceeded');
    // A day of an org is counted in shards (one per run here, when their ids hash apart): the
    // quota check above added them up, and so does the meter.
    const { rows } = await admin.query(
      `select sum(runs)::int as runs, sum(llm_calls)::int as llm_calls, sum(input_tokens)::text as input_tokens,
              sum(output_tokens)::text as output_tokens, sum(cost_usd)::text as cost_usd
         from public.usage_daily where org_id = $1 group by day`,
      [orgId],
    );
    // 40 × 2 / 1e6 + 20 × 10 / 1e6 = 0.00028 USD
    expect(rows).toEqual([{ runs: 2, llm_calls: 1, input_tokens: '40', output_tokens: '20', cost_usd: '0.000280' }]);
    expect((await runRow(first.runId)).cost_usd).toBe('0.000280');
  });

  it('continues as new in a long run without repeating or losing events', async () => {
    const ids = await newRun('Many steps', { allowedTools: ['knowledge_search'] });
    for (let i = 0; i < 3; i++) llm.enqueue({ kind: 'tool_calls', calls: [{ name: 'knowledge_search', arguments: `{"query":"q${i}"}` }] });
    llm.enqueue({ kind: 'text', content: 'Finally done.' });
    const handle = await start(ids, { continueAsNewAfterSteps: 1 });

    const result = await handle.result();

    expect(result.status).toBe('completed');
    const types = (await events(ids.runId)).map((e) => `${e.seq}:${e.type}`);
    expect(types).toEqual([
      '1:run.started',
      '2:llm.completed', '3:tool.completed',
      '4:llm.completed', '5:tool.completed',
      '6:llm.completed', '7:tool.completed',
      '8:llm.completed', '9:run.completed',
    ]);
    const executions = [];
    for await (const e of temporal.client.workflow.list({ query: `WorkflowId = '${agentRunWorkflowId(ids.runId)}'` })) executions.push(e.status.name);
    expect(executions.filter((s) => s === 'CONTINUED_AS_NEW')).toHaveLength(3);
    expect((await runRow(ids.runId)).output).toBe('Finally done.');
  });

  it('a conversation continues as new between turns, keeping its transcript and numbering', async () => {
    const { orgId } = await createOrgWithMembers(admin, ['owner']);
    const agentId = await createAgent(admin, orgId, { model: 'test/model' });
    const runId = await createRun(admin, orgId, agentId, { input: '' });
    await admin.query(`update public.agent_runs set thread_key = 'can-thread' where id = $1`, [runId]);
    llm.setReplyFor(() => true, (body) => ({ kind: 'text', content: `reply ${body.messages.filter((m) => m.role === 'user').length}` }));
    const handle = await start({ orgId, agentId, runId }, { conversation: { idleTimeoutSeconds: 2 }, continueAsNewAfterSteps: 1 });

    for (const text of ['one', 'two', 'three']) {
      const { rows } = await admin.query(
        `insert into public.conversation_messages (org_id, run_id, author, content) values ($1, $2, $3, $4) returning id`,
        [orgId, runId, randomUUID(), text],
      );
      await handle.executeUpdate(postMessageUpdate, { args: [{ messageId: rows[0].id }] });
      // Between turns means the run has answered and gone back to waiting (status sleeping, which
      // the next execution writes after continuing as new), not merely written its answer: the
      // turn's bookkeeping after the answer (the reply into a CRM thread) still runs before that.
      await waitFor(
        `reply to ${text}`,
        async () => (await events(runId)).filter((e) => e.type === 'llm.completed').length === ['one', 'two', 'three'].indexOf(text) + 1 && (await runRow(runId)).status === 'sleeping',
      );
    }
    await temporal.client.workflow.getHandle(agentRunWorkflowId(runId)).result();

    expect((await events(runId)).map((e) => `${e.seq}:${e.type}`)).toEqual([
      '1:run.started',
      '2:user.message', '3:llm.completed',
      '4:user.message', '5:llm.completed',
      '6:user.message', '7:llm.completed',
      '8:run.completed',
    ]);
    const lastRequest = llm.requests.at(-1)!.body as { messages: Array<{ role: string; content: string }> };
    expect(lastRequest.messages.map((m) => m.content)).toEqual(['one', 'reply 1', 'two', 'reply 2', 'three']);
    const executions = [];
    for await (const e of temporal.client.workflow.list({ query: `WorkflowId = '${agentRunWorkflowId(runId)}'` })) executions.push(e.status.name);
    expect(executions.filter((s) => s === 'CONTINUED_AS_NEW').length).toBeGreaterThanOrEqual(2);
    expect((await runRow(runId)).output).toBe('reply 3');
  });
});
