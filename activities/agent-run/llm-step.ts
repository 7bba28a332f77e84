/** One LLM turn: the transcript so far to the model, its answer recorded and metered as one event. */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { autocommitEachAsPrincipal } from '../../lib/db.js';
import { recordLlmCall } from '../../lib/metrics.js';
import { LlmError } from '../../integrations/llm/errors.js';
import type { ToolCall } from '../../integrations/llm/types.js';
import type { ChatRoute } from '../../integrations/llm/org-provider.js';
import { toActivityFailure, toLlmCallFailure } from '../activity-failure.js';
import { DeltaPublisher } from '../deltas.js';
import { NonRetryableFailureTypes } from '../failure-types.js';
import { costOf } from '../../lib/pricing.js';
import type { ToolRegistry } from '../tools/registry.js';
import type { LlmStepResult, RunStep, ToolCallPlan } from './contract.js';
import type { ResolvedAgentRunDeps } from './deps.js';
import { loadAgentConfig, workerOf, type AgentConfigRow } from './run-store.js';
import { estimateCallTokens, releaseCallTokens, reserveCallTokens } from './spend.js';
import { buildTranscript } from './transcript.js';

/** How the workflow should treat each tool call the model made: unknown, plain, or waiting for approval. */
export function planToolCalls(
  tools: ToolRegistry,
  config: Pick<AgentConfigRow, 'allowed_tools' | 'approval_tools'>,
  calls: ToolCall[],
): ToolCallPlan[] {
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

/** The run's token budget and the org's daily quota, checked before each call to the model. */
export function checkBudgets(config: Pick<AgentConfigRow, 'run_token_budget' | 'run_tokens' | 'daily_token_quota' | 'tokens_today'>): void {
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
}

export function createLlmStepActivities(deps: Pick<ResolvedAgentRunDeps, 'pool' | 'routes' | 'tools' | 'prices' | 'heartbeatIntervalMs' | 'streamDeltas' | 'spend'>) {
  const { pool, routes, tools, prices, heartbeatIntervalMs, streamDeltas, spend } = deps;

  /**
   * One LLM turn, recorded as event `seq`. Checks the run's token budget and the org's daily
   * quota first; meters tokens and cost together with the event, so a retry never counts twice.
   * Safe to retry: a recorded turn is returned as recorded, without calling the model again.
   */
  async function callLlm(step: RunStep): Promise<LlmStepResult> {
    const ctx = Context.current();
    // Both statements of a turn are transactions of one statement each: one round trip apiece.
    const db = autocommitEachAsPrincipal(pool, workerOf(step.orgId));
    // The transcript so far, plus event `step.seq` when already recorded (a retried step).
    const { config, events: loaded } = await loadAgentConfig(db, step, { transcriptWithSeq: step.seq });
    const recorded = loaded.find((e) => e.seq === step.seq);
    if (recorded) {
      const p = recorded.payload;
      const usage = (p.usage as { inputTokens: number; outputTokens: number } | undefined) ?? { inputTokens: 0, outputTokens: 0 };
      return {
        finishReason: String(p.finishReason),
        ...usage,
        toolCalls: planToolCalls(tools, config, (p.toolCalls as ToolCall[] | undefined) ?? []),
      };
    }
    // An agent or org that sets no ceiling gets the operator's (lib/spend.ts): never unlimited.
    checkBudgets({
      ...config,
      run_token_budget: config.run_token_budget ?? spend.runTokenBudgetDefault,
      daily_token_quota: config.daily_token_quota ?? String(spend.orgDailyTokenQuotaDefault),
    });
    // The org's own provider and its model when it set one (read and decrypted here, never passed
    // in by the workflow), the deployment's provider and the agent's model otherwise.
    let route: ChatRoute;
    try {
      route = await routes.chatFor(step.orgId);
    } catch (err) {
      throw toActivityFailure(err);
    }
    const model = route.source === 'org' ? route.model : config.model;
    const messages = buildTranscript(config, loaded.filter((e) => e.seq !== step.seq));
    const definitions = tools.definitionsFor(config.allowed_tools);
    await reserveCallTokens(pool, spend, step, estimateCallTokens({ messages, definitions }, config.max_output_tokens));

    // Activities only learn about cancellation through heartbeats, so heartbeat while waiting on
    // the provider; the cancellation signal then aborts the HTTP request itself.
    const heartbeat = setInterval(() => ctx.heartbeat(), heartbeatIntervalMs);
    const deltas = streamDeltas ? new DeltaPublisher(pool, { runId: step.runId, seq: step.seq }) : undefined;
    let answer;
    const llmStarted = performance.now();
    try {
      answer = await route.client.complete(
        {
          model,
          messages,
          temperature: Number(config.temperature),
          maxOutputTokens: config.max_output_tokens,
          ...(definitions.length > 0 ? { tools: definitions } : {}),
        },
        { signal: ctx.cancellationSignal, ...(deltas ? { onDelta: (text: string) => deltas.push(text) } : {}) },
      );
    } catch (err) {
      recordLlmCall({ model, outcome: err instanceof LlmError ? err.kind : 'error', seconds: (performance.now() - llmStarted) / 1000 });
      await releaseCallTokens(pool, step);
      throw toLlmCallFailure(err, route, step.orgId);
    } finally {
      clearInterval(heartbeat);
      await deltas?.flush();
    }

    // The org's own provider bills the org, not the service: its calls count in tokens (quotas
    // and budgets apply) at no cost to the service (docs/agent-runtime.md, "The org's own model").
    const cost = route.source === 'org' ? 0 : costOf(prices, model, answer.usage);
    recordLlmCall({ model, outcome: 'ok', seconds: (performance.now() - llmStarted) / 1000, ...answer.usage, costUsd: cost });
    // The event, the run's totals and the org's daily usage in one statement: totals move only
    // when the event is new, so a retried activity cannot count twice. The call's reservation
    // becomes its real usage in the same statement (spend.ts).
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
                llm_calls = llm_calls + 1, cost_usd = cost_usd + $7::numeric,
            reserved_tokens = 0, reserved_seq = null
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
      toolCalls: planToolCalls(tools, config, answer.toolCalls),
    };
  }

  return { callLlm };
}
