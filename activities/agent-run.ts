import { ApplicationFailure, Context } from '@temporalio/activity';
import type pg from 'pg';
import type { Logger } from '../lib/logger.js';
import { asPrincipal, queryAsPrincipal, withPrincipal, type Queryable } from '../lib/db.js';
import { NonRetryableFailureTypes } from './failure-types.js';
import { LlmError, type ChatMessage, type LlmClient, type ToolCall } from '../integrations/llm/chat-completions.js';
import { DeltaPublisher } from './deltas.js';
import { runEffectOnce, type JsonValue } from './effects.js';
import { costOf, DEFAULT_PRICES, type PriceTable } from './pricing.js';
import { recordLlmCall } from '../lib/metrics.js';
import { createToolRegistry } from './tools/builtin.js';
import { ToolError, type ToolContext, type ToolControl, type ToolKind, type ToolRegistry } from './tools/registry.js';

/**
 * Activities of `agentRun`. Arguments and results carry ids, sequence numbers, tool names and
 * small numbers only: the run's input, the instructions, the model's answers, tool arguments and
 * tool results stay in Postgres (agent_runs, run_events, run_approvals), so Temporal histories
 * hold no tenant text. Every database write happens as the worker principal of the run's org, so
 * RLS keeps a run of org A away from org B's rows even if an id were wrong.
 *
 * The transcript is the run's event log: `llm.completed` events are the assistant messages
 * (with their tool calls), `tool.completed` events the tool messages. Every activity that records
 * an event is keyed by the event's `seq` (chosen deterministically by the workflow), and checks
 * for its own event first, so a retry after the write returns what was recorded instead of
 * calling the model or the tool again.
 */

export interface RunRef {
  orgId: string;
  runId: string;
}

/** `seq` is chosen by the workflow (deterministically), which makes event inserts idempotent across activity retries. */
export interface RunStep extends RunRef {
  seq: number;
}

/** The agent settings the workflow needs to steer the loop (numbers only). */
export interface RunSettings {
  maxSteps: number;
  approvalTimeoutSeconds: number;
  busyPolicy: 'queue' | 'reject' | 'interrupt';
}

/** A tool call as the workflow sees it: which one, which registered tool, and how to treat it. */
export interface ToolCallPlan {
  index: number;
  /** The registered tool name, or null when the model named a tool the agent may not use. */
  tool: string | null;
  kind: ToolKind | null;
  needsApproval: boolean;
}

export interface LlmStepResult {
  finishReason: string;
  inputTokens: number;
  outputTokens: number;
  toolCalls: ToolCallPlan[];
}

export interface ToolCallRef extends RunStep {
  /** The seq of the llm.completed event that requested the call. */
  llmSeq: number;
  index: number;
}

export type ToolStepResult =
  | { outcome: 'completed' | 'error' }
  | { outcome: 'control'; control: ToolControl };

export type HumanOutcome = 'rejected' | 'expired' | 'answered';

export type RunStatus = 'running' | 'awaiting_approval' | 'sleeping';

export type RunOutcome =
  | { status: 'completed'; outputSeq: number }
  | { status: 'failed'; error: { type: string; message: string } }
  | { status: 'cancelled' };

export interface AgentRunActivityDeps {
  pool: pg.Pool;
  llm: LlmClient;
  logger: Logger;
  /** Tools agents may call; defaults to the built-ins. */
  tools?: ToolRegistry;
  /** USD per million tokens by model; defaults to DEFAULT_PRICES. */
  prices?: PriceTable;
  /** How often a long LLM call reports liveness; must be well below the activity's heartbeatTimeout. */
  heartbeatIntervalMs?: number;
  /** Stream LLM answers and publish token deltas for live views (default true). */
  streamDeltas?: boolean;
}

interface EventRow {
  seq: number;
  type: string;
  payload: Record<string, unknown>;
}

async function appendEvent(tx: Queryable, step: RunStep, type: string, payload: Record<string, unknown>): Promise<boolean> {
  const result = await tx.query(
    `insert into public.run_events (org_id, run_id, seq, type, payload)
     values ($1, $2, $3, $4, $5)
     on conflict (run_id, seq) do nothing`,
    [step.orgId, step.runId, step.seq, type, payload],
  );
  return result.rowCount === 1;
}

function workerOf(orgId: string) {
  return { kind: 'worker', orgId } as const;
}

function runGone(runId: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(`Run ${runId} or its agent no longer exists`, NonRetryableFailureTypes.runNotFound);
}

interface AgentConfigRow {
  agent_id: string;
  model: string;
  temperature: string;
  max_output_tokens: number;
  instructions: string;
  allowed_tools: string[];
  approval_tools: string[];
  run_token_budget: number | null;
  input: string;
  run_tokens: number;
  daily_token_quota: string | null;
  tokens_today: string;
}

/**
 * The agent's configuration and the run's budget state, with the run's events that `events`
 * selects, in one query: every LLM turn and tool call starts here, and each round trip to
 * Postgres counts (a context switch on the worker's host, the network's latency in production).
 */
async function loadAgentConfig(
  tx: Queryable,
  ref: RunRef,
  events: { transcriptWithSeq: number } | { seqs: number[] },
): Promise<{ config: AgentConfigRow; events: EventRow[] }> {
  const eventFilter =
    'transcriptWithSeq' in events ? `(e.type in ('llm.completed', 'tool.completed', 'user.message') or e.seq = $3::int)` : `e.seq = any($3::int[])`;
  const { rows } = await tx.query<AgentConfigRow & { events: EventRow[] }>(
    `select a.id as agent_id, a.model, a.temperature, a.max_output_tokens, a.instructions, a.allowed_tools, a.approval_tools,
            a.run_token_budget, r.input, r.input_tokens + r.output_tokens as run_tokens, o.daily_token_quota,
            coalesce((select sum(u.input_tokens + u.output_tokens) from public.usage_daily u
                       where u.org_id = r.org_id and u.day = (now() at time zone 'utc')::date), 0) as tokens_today,
            coalesce((select json_agg(json_build_object('seq', e.seq, 'type', e.type, 'payload', e.payload) order by e.seq)
                        from public.run_events e
                       where e.run_id = r.id and e.org_id = r.org_id and ${eventFilter}), '[]'::json) as events
       from public.agent_runs r
       join public.agents a on a.id = r.agent_id and a.org_id = r.org_id
       join public.organizations o on o.id = r.org_id
      where r.id = $1 and r.org_id = $2`,
    [ref.runId, ref.orgId, 'transcriptWithSeq' in events ? events.transcriptWithSeq : events.seqs],
  );
  if (!rows[0]) throw runGone(ref.runId);
  const { events: loaded, ...config } = rows[0];
  return { config, events: loaded };
}

/** Rebuilds the chat transcript from the run's input and its event log. */
function buildTranscript(config: AgentConfigRow, events: EventRow[]): ChatMessage[] {
  const messages: ChatMessage[] = [];
  if (config.instructions.trim() !== '') messages.push({ role: 'system', content: config.instructions });
  // A conversation's row has no input of its own: its messages are user.message events.
  if (config.input !== '') messages.push({ role: 'user', content: config.input });
  for (const event of events) {
    const p = event.payload;
    if (event.type === 'llm.completed') {
      const toolCalls = (p.toolCalls as ToolCall[] | undefined) ?? [];
      messages.push({ role: 'assistant', content: (p.content as string | null) ?? null, ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}) });
    } else if (event.type === 'tool.completed') {
      const content = JSON.stringify(p.error !== undefined ? { error: p.error } : (p.result ?? null));
      messages.push({ role: 'tool', tool_call_id: String(p.toolCallId), content });
    } else {
      messages.push({ role: 'user', content: String(p.content ?? '') });
    }
  }
  return answerDanglingToolCalls(messages);
}

/**
 * Providers reject an assistant message whose tool calls lack tool answers. A turn interrupted
 * by a newer message (busy policy `interrupt`) leaves such calls behind; they are answered as
 * interrupted, right after the assistant message that made them.
 */
function answerDanglingToolCalls(messages: ChatMessage[]): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i]!;
    out.push(message);
    if (message.role !== 'assistant' || !message.tool_calls?.length) continue;
    const answered = new Set<string>();
    while (messages[i + 1]?.role === 'tool') {
      const tool = messages[++i] as Extract<ChatMessage, { role: 'tool' }>;
      answered.add(tool.tool_call_id);
      out.push(tool);
    }
    for (const call of message.tool_calls) {
      if (!answered.has(call.id)) {
        out.push({ role: 'tool', tool_call_id: call.id, content: JSON.stringify({ error: 'Interrupted by a newer message; not performed.' }) });
      }
    }
  }
  return out;
}

export function createAgentRunActivities(deps: AgentRunActivityDeps) {
  const { pool, llm } = deps;
  const tools = deps.tools ?? createToolRegistry();
  const prices = deps.prices ?? DEFAULT_PRICES;
  const heartbeatIntervalMs = deps.heartbeatIntervalMs ?? 5_000;
  const streamDeltas = deps.streamDeltas ?? true;

  function planToolCalls(config: Pick<AgentConfigRow, 'allowed_tools' | 'approval_tools'>, calls: ToolCall[]): ToolCallPlan[] {
    return calls.map((call, index) => {
      const tool = config.allowed_tools.includes(call.function.name) ? tools.get(call.function.name) : undefined;
      return {
        index,
        tool: tool?.name ?? null,
        kind: tool?.kind ?? null,
        needsApproval: tool !== undefined && config.approval_tools.includes(tool.name),
      };
    });
  }

  async function startRun(step: RunStep): Promise<RunSettings> {
    const db = asPrincipal(pool, workerOf(step.orgId));
    // One statement, so one round trip: the status, the run.started event, and the org's run
    // count (only when the event is new, so a retried start counts once).
    const started = await db.query<{ max_steps: number; approval_timeout_seconds: number; busy_policy: RunSettings['busyPolicy'] }>(
      `with started as (
         update public.agent_runs r
            set status = 'running', started_at = coalesce(started_at, now())
           from public.agents a
          where r.id = $1 and r.org_id = $2 and r.status in ('queued', 'running')
            and a.id = r.agent_id and a.org_id = r.org_id
          returning a.max_steps, a.approval_timeout_seconds, a.busy_policy
       ),
       event as (
         insert into public.run_events (org_id, run_id, seq, type, payload)
         select $2, $1, $3, 'run.started', '{}'::jsonb where exists (select 1 from started)
         on conflict (run_id, seq) do nothing
         returning seq
       ),
       usage as (
         insert into public.usage_daily (org_id, day, shard, runs)
         select $2, (now() at time zone 'utc')::date, private.usage_shard($1), 1 where exists (select 1 from event)
         on conflict (org_id, day, shard) do update set runs = public.usage_daily.runs + 1
       )
       select max_steps, approval_timeout_seconds, busy_policy from started`,
      [step.runId, step.orgId, step.seq],
    );
    const settings = started.rows[0];
    if (!settings) {
      const existing = await db.query(`select status from public.agent_runs where id = $1 and org_id = $2`, [step.runId, step.orgId]);
      if (existing.rowCount === 1) {
        throw ApplicationFailure.nonRetryable(`Run ${step.runId} has already finished`, NonRetryableFailureTypes.runNotFound);
      }
      // The API commits the run row right after Temporal accepts the workflow, so the first
      // attempt may race that commit. Retryable; the workflow bounds the attempts.
      throw ApplicationFailure.retryable(`Run ${step.runId} is not visible in org ${step.orgId} (yet)`, 'RunNotVisible');
    }
    return { maxSteps: settings.max_steps, approvalTimeoutSeconds: settings.approval_timeout_seconds, busyPolicy: settings.busy_policy };
  }

  /**
   * One LLM turn, recorded as event `seq`. Checks the run's token budget and the org's daily
   * quota first; meters tokens and cost together with the event, so a retry never counts twice.
   * Safe to retry: a recorded turn is returned as recorded, without calling the model again.
   */
  async function callLlm(step: RunStep): Promise<LlmStepResult> {
    const ctx = Context.current();
    // Both statements of a turn are transactions of one statement each: one round trip apiece.
    const db = asPrincipal(pool, workerOf(step.orgId));
    const prepared = await (async () => {
      // The transcript so far, plus event `step.seq` when already recorded (a retried step).
      const { config, events: loaded } = await loadAgentConfig(db, step, { transcriptWithSeq: step.seq });
      const recorded = loaded.find((e) => e.seq === step.seq);
      const events = loaded.filter((e) => e.seq !== step.seq);
      if (recorded) return { config, recorded };
      if (config.run_token_budget !== null && config.run_tokens >= config.run_token_budget) {
        throw ApplicationFailure.nonRetryable(
          `The run used ${config.run_tokens} tokens, reaching its budget of ${config.run_token_budget}`,
          NonRetryableFailureTypes.runBudgetExceeded,
        );
      }
      if (config.daily_token_quota !== null && Number(config.tokens_today) >= Number(config.daily_token_quota)) {
        throw ApplicationFailure.nonRetryable(
          `The organization used ${config.tokens_today} tokens today, reaching its daily quota of ${config.daily_token_quota}`,
          NonRetryableFailureTypes.orgQuotaExceeded,
        );
      }
      return { config, recorded: undefined, messages: buildTranscript(config, events) };
    })();
    const { config } = prepared;
    if (prepared.recorded) {
      const p = prepared.recorded.payload;
      const usage = (p.usage as { inputTokens: number; outputTokens: number } | undefined) ?? { inputTokens: 0, outputTokens: 0 };
      return {
        finishReason: String(p.finishReason),
        ...usage,
        toolCalls: planToolCalls(config, (p.toolCalls as ToolCall[] | undefined) ?? []),
      };
    }

    // Activities only learn about cancellation through heartbeats, so heartbeat while waiting on
    // the provider; the cancellation signal then aborts the HTTP request itself.
    const heartbeat = setInterval(() => ctx.heartbeat(), heartbeatIntervalMs);
    const deltas = streamDeltas ? new DeltaPublisher(pool, { runId: step.runId, seq: step.seq }) : undefined;
    const definitions = tools.definitionsFor(config.allowed_tools);
    let answer;
    const llmStarted = performance.now();
    try {
      answer = await llm.complete(
        {
          model: config.model,
          messages: prepared.messages!,
          temperature: Number(config.temperature),
          maxOutputTokens: config.max_output_tokens,
          ...(definitions.length > 0 ? { tools: definitions } : {}),
        },
        { signal: ctx.cancellationSignal, ...(deltas ? { onDelta: (text: string) => deltas.push(text) } : {}) },
      );
    } catch (err) {
      recordLlmCall({ model: config.model, outcome: err instanceof LlmError ? err.kind : 'error', seconds: (performance.now() - llmStarted) / 1000 });
      throw toActivityFailure(err);
    } finally {
      clearInterval(heartbeat);
      await deltas?.flush();
    }

    const cost = costOf(prices, config.model, answer.usage);
    recordLlmCall({ model: config.model, outcome: 'ok', seconds: (performance.now() - llmStarted) / 1000, ...answer.usage, costUsd: cost });
    // The event, the run's totals and the org's daily usage in one statement: totals move only
    // when the event is new, so a retried activity cannot count twice.
    await db.query(
      `with event as (
         insert into public.run_events (org_id, run_id, seq, type, payload)
         values ($1, $2, $3, 'llm.completed', $4)
         on conflict (run_id, seq) do nothing
         returning seq
       ),
       totals as (
         update public.agent_runs
            set input_tokens = input_tokens + $5::int, output_tokens = output_tokens + $6::int,
                llm_calls = llm_calls + 1, cost_usd = cost_usd + $7::numeric
          where id = $2 and org_id = $1 and exists (select 1 from event)
       )
       insert into public.usage_daily (org_id, day, shard, llm_calls, input_tokens, output_tokens, cost_usd)
       select $1, (now() at time zone 'utc')::date, private.usage_shard($2), 1, $5::int, $6::int, $7::numeric
        where exists (select 1 from event)
       on conflict (org_id, day, shard) do update set
         llm_calls = public.usage_daily.llm_calls + 1,
         input_tokens = public.usage_daily.input_tokens + excluded.input_tokens,
         output_tokens = public.usage_daily.output_tokens + excluded.output_tokens,
         cost_usd = public.usage_daily.cost_usd + excluded.cost_usd`,
      [
        step.orgId,
        step.runId,
        step.seq,
        { model: answer.model, content: answer.content, toolCalls: answer.toolCalls, finishReason: answer.finishReason, usage: answer.usage, costUsd: cost },
        answer.usage.inputTokens,
        answer.usage.outputTokens,
        cost,
      ],
    );
    ctx.log.info('LLM step recorded', { seq: step.seq, finishReason: answer.finishReason, toolCalls: answer.toolCalls.length, ...answer.usage });
    return {
      finishReason: answer.finishReason,
      inputTokens: answer.usage.inputTokens,
      outputTokens: answer.usage.outputTokens,
      toolCalls: planToolCalls(config, answer.toolCalls),
    };
  }

  /** The tool call of event `llmSeq`; with `alsoSeq`, event `seq` too (one query for both). */
  async function loadToolCall(
    tx: Queryable,
    call: ToolCallRef,
    alsoSeq = false,
  ): Promise<{ toolCall: ToolCall; config: AgentConfigRow; recorded: EventRow | undefined }> {
    const { config, events: rows } = await loadAgentConfig(tx, call, { seqs: alsoSeq ? [call.llmSeq, call.seq] : [call.llmSeq] });
    const llmEvent = rows.find((r) => r.seq === call.llmSeq);
    const toolCall = (llmEvent?.payload.toolCalls as ToolCall[] | undefined)?.[call.index];
    if (!toolCall) {
      throw ApplicationFailure.nonRetryable(`Run ${call.runId} has no tool call ${call.llmSeq}/${call.index}`, NonRetryableFailureTypes.runNotFound);
    }
    return { toolCall, config, recorded: alsoSeq ? rows.find((r) => r.seq === call.seq) : undefined };
  }

  /**
   * Validates and executes tool call `index` of LLM turn `llmSeq`, recording its result (or the
   * error the model should see) as event `seq`. Control tools only validate and return what
   * the workflow should do. Effect tools get `${workflowId}:${activityId}` as idempotency key.
   */
  async function executeTool(call: ToolCallRef): Promise<ToolStepResult> {
    const ctx = Context.current();
    // Loading the call and recording its result are one statement each: one round trip apiece.
    const db = asPrincipal(pool, workerOf(call.orgId));
    const { toolCall, config, recorded } = await loadToolCall(db, call, true);
    if (recorded) return { outcome: recorded.payload.error !== undefined ? 'error' : 'completed' };

    const record = async (payload: { result: JsonValue } | { error: string }): Promise<ToolStepResult> => {
      await appendEvent(db, call, 'tool.completed', { toolCallId: toolCall.id, name: toolCall.function.name, ...payload });
      return { outcome: 'error' in payload ? 'error' : 'completed' };
    };

    const name = toolCall.function.name;
    const tool = config.allowed_tools.includes(name) ? tools.get(name) : undefined;
    if (!tool) {
      const available = config.allowed_tools.filter((t) => tools.get(t)).join(', ') || 'none';
      return record({ error: `Unknown tool "${name}". Tools available to you: ${available}.` });
    }
    let rawArgs: unknown;
    try {
      rawArgs = toolCall.function.arguments.trim() === '' ? {} : JSON.parse(toolCall.function.arguments);
    } catch {
      return record({ error: `The arguments of ${name} are not valid JSON. Send a JSON object matching the tool's schema.` });
    }
    const parsed = tool.parameters.safeParse(rawArgs);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(arguments)'}: ${i.message}`).join('; ');
      return record({ error: `Invalid arguments for ${name}: ${problems}. Fix them and call the tool again.` });
    }

    if (tool.kind === 'control') {
      const control = tool.control!(parsed.data);
      if (control.type === 'sleep') {
        // The model learns the follow-up was scheduled; the workflow sleeps after this returns.
        await record({ result: { scheduled: true, resumesAfterSeconds: control.seconds } });
      }
      return { outcome: 'control', control };
    }

    const info = ctx.info;
    // Standalone activities have no workflow; agent tools always run inside agentRun.
    const idempotencyKey = `${info.workflowExecution?.workflowId ?? `run:${call.runId}`}:${info.activityId}`;
    const toolContext: ToolContext = {
      orgId: call.orgId,
      runId: call.runId,
      agentId: config.agent_id,
      toolName: tool.name,
      idempotencyKey,
      signal: ctx.cancellationSignal,
      heartbeat: () => ctx.heartbeat(),
      withOrgScope: (fn) => withPrincipal(pool, workerOf(call.orgId), fn),
      runEffectOnce: (effect) => runEffectOnce({ pool, orgId: call.orgId, runId: call.runId, toolName: tool.name }, idempotencyKey, effect),
    };
    let result: JsonValue;
    try {
      result = await tool.execute!(parsed.data, toolContext);
    } catch (err) {
      if (err instanceof ToolError) return record({ error: err.message });
      throw err;
    }
    return record({ result });
  }

  /** Takes a conversation message into the run's transcript (event `seq`, type user.message). */
  async function acceptMessage(step: RunStep & { messageId: string }): Promise<void> {
    await withPrincipal(pool, workerOf(step.orgId), async (tx) => {
      const { rows } = await tx.query<{ content: string; author: string | null; source: string }>(
        `select content, author, source from public.conversation_messages where id = $1 and run_id = $2 and org_id = $3`,
        [step.messageId, step.runId, step.orgId],
      );
      const message = rows[0];
      // The API commits the message before the update that delivers it; a missing row is a bug or a deleted run.
      if (!message) throw runGone(step.runId);
      await appendEvent(tx, step, 'user.message', { messageId: step.messageId, author: message.author, source: message.source, content: message.content });
      await tx.query(
        `update public.agent_runs set status = 'running' where id = $1 and org_id = $2 and status in ('running', 'sleeping')`,
        [step.runId, step.orgId],
      );
    });
  }

  async function setRunStatus(input: RunRef & { status: RunStatus; event?: { seq: number; type: string; payload?: Record<string, JsonValue> } }): Promise<void> {
    await withPrincipal(pool, workerOf(input.orgId), async (tx) => {
      await tx.query(
        `update public.agent_runs set status = $3 where id = $1 and org_id = $2 and status in ('running', 'awaiting_approval', 'sleeping')`,
        [input.runId, input.orgId, input.status],
      );
      if (input.event) await appendEvent(tx, { ...input, seq: input.event.seq }, input.event.type, { ...input.event.payload, status: input.status });
    });
  }

  /** Opens a pending approval (or a question to a person) for a tool call; the run waits for it. */
  async function requestApproval(
    input: ToolCallRef & { approvalId: string; kind: 'approval' | 'input'; timeoutSeconds: number },
  ): Promise<void> {
    await withPrincipal(pool, workerOf(input.orgId), async (tx) => {
      const { toolCall } = await loadToolCall(tx, input);
      let args: unknown = toolCall.function.arguments;
      try {
        args = JSON.parse(toolCall.function.arguments);
      } catch {
        // Shown as the model sent it.
      }
      await tx.query(
        `insert into public.run_approvals (id, org_id, run_id, seq, kind, tool_name, expires_at)
         values ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
         on conflict (id) do nothing`,
        [input.approvalId, input.orgId, input.runId, input.seq, input.kind, toolCall.function.name, input.timeoutSeconds],
      );
      await appendEvent(tx, input, 'approval.requested', {
        approvalId: input.approvalId,
        kind: input.kind,
        toolName: toolCall.function.name,
        arguments: args,
      });
      await tx.query(
        `update public.agent_runs set status = 'awaiting_approval' where id = $1 and org_id = $2 and status in ('running', 'sleeping')`,
        [input.runId, input.orgId],
      );
    });
  }

  /** Records the decision the workflow accepted (or the expiry) on the approval and in the event log. */
  async function recordApprovalDecision(
    input: RunStep & { approvalId: string; decision: 'approve' | 'reject' | 'expire'; responseId?: string },
  ): Promise<void> {
    const status = { approve: 'approved', reject: 'rejected', expire: 'expired' }[input.decision];
    await withPrincipal(pool, workerOf(input.orgId), async (tx) => {
      await tx.query(
        `update public.run_approvals a
            set status = $4, response_id = $5, decided_at = now(),
                decided_by = (select r.author from public.run_approval_responses r where r.id = $5 and r.org_id = a.org_id)
          where a.id = $1 and a.org_id = $2 and a.run_id = $3 and a.status = 'pending'`,
        [input.approvalId, input.orgId, input.runId, status, input.responseId ?? null],
      );
      await appendEvent(tx, input, 'approval.decided', { approvalId: input.approvalId, status, responseId: input.responseId ?? null });
      await tx.query(
        `update public.agent_runs set status = 'running' where id = $1 and org_id = $2 and status = 'awaiting_approval'`,
        [input.runId, input.orgId],
      );
    });
  }

  /** The tool result for a call a person rejected, let expire, or answered (request_human_input). */
  async function completeHumanStep(input: ToolCallRef & { approvalId: string; outcome: HumanOutcome }): Promise<void> {
    await withPrincipal(pool, workerOf(input.orgId), async (tx) => {
      const { toolCall } = await loadToolCall(tx, input);
      const { rows } = await tx.query<{ comment: string | null }>(
        `select r.comment from public.run_approvals a join public.run_approval_responses r on r.id = a.response_id and r.org_id = a.org_id
          where a.id = $1 and a.org_id = $2`,
        [input.approvalId, input.orgId],
      );
      const comment = rows[0]?.comment ?? null;
      const payload =
        input.outcome === 'answered'
          ? { result: { answer: comment ?? '' } }
          : input.outcome === 'rejected'
            ? { error: `A person rejected this action; it was not performed.${comment ? ` Their comment: ${comment}` : ''}` }
            : { error: 'Nobody decided within the approval timeout; the action was not performed.' };
      await appendEvent(tx, input, 'tool.completed', { toolCallId: toolCall.id, name: toolCall.function.name, ...payload });
    });
  }

  async function finishRun(step: RunStep & { outcome: RunOutcome }): Promise<void> {
    const { outcome } = step;
    // One statement, so one round trip: the run's final state, its pending approvals cancelled
    // (nobody can decide for a run that has ended) and the run.<status> event. A completed run's
    // output is the content of its final answer; a failed or cancelled run keeps what it had.
    await queryAsPrincipal(
      pool,
      workerOf(step.orgId),
      `with run as (
         update public.agent_runs r
            set status = $3, completed_at = now(), error = $4,
                output = case when $3 = 'completed'
                              then (select e.payload->>'content' from public.run_events e where e.run_id = r.id and e.seq = $5)
                              else r.output end
          where r.id = $1 and r.org_id = $2
       ),
       approvals as (
         update public.run_approvals set status = 'cancelled', decided_at = now()
          where run_id = $1 and org_id = $2 and status = 'pending'
       )
       insert into public.run_events (org_id, run_id, seq, type, payload)
       values ($2, $1, $6, $7, $8)
       on conflict (run_id, seq) do nothing`,
      [
        step.runId,
        step.orgId,
        outcome.status,
        outcome.status === 'failed' ? outcome.error : null,
        outcome.status === 'completed' ? outcome.outputSeq : null,
        step.seq,
        `run.${outcome.status}`,
        outcome.status === 'failed' ? { error: outcome.error } : {},
      ],
    );
  }

  return { startRun, callLlm, executeTool, acceptMessage, setRunStatus, requestApproval, recordApprovalDecision, completeHumanStep, finishRun };
}

export type AgentRunActivities = ReturnType<typeof createAgentRunActivities>;

/**
 * Maps the LLM client's classified errors onto Temporal's retry semantics: the provider's
 * 4xx answers will not change on retry, 429 retries after the provider's own `Retry-After`.
 */
export function toActivityFailure(err: unknown): unknown {
  if (!(err instanceof LlmError)) return err;
  switch (err.kind) {
    case 'rate_limited':
      return ApplicationFailure.create({
        type: 'LlmRateLimited',
        message: err.message,
        nextRetryDelay: err.retryAfterMs,
      });
    case 'rejected':
      return ApplicationFailure.nonRetryable(err.message, NonRetryableFailureTypes.llmRejected);
    case 'auth':
      return ApplicationFailure.nonRetryable(err.message, NonRetryableFailureTypes.llmAuth);
    case 'aborted':
      // The activity was cancelled; let the SDK report the cancellation it is already handling.
      return err;
    case 'server':
      return ApplicationFailure.create({ type: 'LlmServerError', message: err.message });
    case 'timeout':
      return ApplicationFailure.create({ type: 'LlmTimeout', message: err.message });
    case 'network':
      return ApplicationFailure.create({ type: 'LlmNetworkError', message: err.message });
    case 'invalid_response':
      return ApplicationFailure.create({ type: 'LlmInvalidResponse', message: err.message });
  }
}
