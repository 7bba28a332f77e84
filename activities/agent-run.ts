import { ApplicationFailure, Context } from '@temporalio/activity';
import type pg from 'pg';
import type { Logger } from '../lib/logger.js';
import { withPrincipal, type Tx } from '../lib/db.js';
import { NonRetryableFailureTypes } from './failure-types.js';
import { LlmError, type ChatMessage, type LlmClient } from '../integrations/llm/chat-completions.js';

/**
 * Activities of `agentRun`. Arguments and results carry ids and small numbers only: the run's
 * input, instructions and the model's answer stay in Postgres, so Temporal histories hold no
 * tenant text. Every database write happens as the worker principal of the run's org, so RLS
 * keeps a run of org A away from org B's rows even if an id were wrong.
 */

export interface RunRef {
  orgId: string;
  runId: string;
}

/** `seq` is chosen by the workflow (deterministically), which makes event inserts idempotent across activity retries. */
export interface RunStep extends RunRef {
  seq: number;
}

export interface LlmStepResult {
  finishReason: string;
  inputTokens: number;
  outputTokens: number;
}

export type RunOutcome =
  | { status: 'completed'; outputSeq: number }
  | { status: 'failed'; error: { type: string; message: string } }
  | { status: 'cancelled' };


export interface AgentRunActivityDeps {
  pool: pg.Pool;
  llm: LlmClient;
  logger: Logger;
  /** How often a long LLM call reports liveness; must be well below the activity's heartbeatTimeout. */
  heartbeatIntervalMs?: number;
}

async function appendEvent(tx: Tx, step: RunStep, type: string, payload: Record<string, unknown>): Promise<boolean> {
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

export function createAgentRunActivities(deps: AgentRunActivityDeps) {
  const { pool, llm } = deps;
  const heartbeatIntervalMs = deps.heartbeatIntervalMs ?? 5_000;

  async function startRun(step: RunStep): Promise<void> {
    await withPrincipal(pool, workerOf(step.orgId), async (tx) => {
      const updated = await tx.query(
        `update public.agent_runs
            set status = 'running', started_at = coalesce(started_at, now())
          where id = $1 and org_id = $2 and status in ('queued', 'running')
          returning id`,
        [step.runId, step.orgId],
      );
      if (updated.rowCount !== 1) {
        const existing = await tx.query(`select status from public.agent_runs where id = $1 and org_id = $2`, [step.runId, step.orgId]);
        if (existing.rowCount === 1) {
          throw ApplicationFailure.nonRetryable(`Run ${step.runId} has already finished`, NonRetryableFailureTypes.runNotFound);
        }
        // The API commits the run row right after Temporal accepts the workflow, so the first
        // attempt may race that commit. Retryable; the workflow bounds the attempts.
        throw ApplicationFailure.retryable(`Run ${step.runId} is not visible in org ${step.orgId} (yet)`, 'RunNotVisible');
      }
      await appendEvent(tx, step, 'run.started', {});
    });
  }

  async function loadConversation(step: RunStep): Promise<{ model: string; temperature: number; maxOutputTokens: number; messages: ChatMessage[] }> {
    return withPrincipal(pool, workerOf(step.orgId), async (tx) => {
      const { rows } = await tx.query<{ model: string; temperature: string; max_output_tokens: number; instructions: string; input: string }>(
        `select a.model, a.temperature, a.max_output_tokens, a.instructions, r.input
           from public.agent_runs r
           join public.agents a on a.id = r.agent_id and a.org_id = r.org_id
          where r.id = $1 and r.org_id = $2`,
        [step.runId, step.orgId],
      );
      const row = rows[0];
      if (!row) {
        throw ApplicationFailure.nonRetryable(`Run ${step.runId} or its agent no longer exists`, NonRetryableFailureTypes.runNotFound);
      }
      const messages: ChatMessage[] = [];
      if (row.instructions.trim() !== '') messages.push({ role: 'system', content: row.instructions });
      messages.push({ role: 'user', content: row.input });
      return { model: row.model, temperature: Number(row.temperature), maxOutputTokens: row.max_output_tokens, messages };
    });
  }

  /** Calls the LLM and records its answer as event `seq`. Safe to retry: a recorded answer is never recorded twice. */
  async function callLlm(step: RunStep): Promise<LlmStepResult> {
    const ctx = Context.current();
    const conversation = await loadConversation(step);

    // Activities only learn about cancellation through heartbeats, so heartbeat while waiting on
    // the provider; the cancellation signal then aborts the HTTP request itself.
    const heartbeat = setInterval(() => ctx.heartbeat(), heartbeatIntervalMs);
    let answer;
    try {
      answer = await llm.complete(
        {
          model: conversation.model,
          messages: conversation.messages,
          temperature: conversation.temperature,
          maxOutputTokens: conversation.maxOutputTokens,
        },
        { signal: ctx.cancellationSignal },
      );
    } catch (err) {
      throw toActivityFailure(err);
    } finally {
      clearInterval(heartbeat);
    }

    await withPrincipal(pool, workerOf(step.orgId), async (tx) => {
      const inserted = await appendEvent(tx, step, 'llm.completed', {
        model: answer.model,
        content: answer.content,
        finishReason: answer.finishReason,
        usage: answer.usage,
      });
      // Token totals move only together with the event, so a retried activity cannot count twice.
      if (inserted) {
        await tx.query(
          `update public.agent_runs
              set input_tokens = input_tokens + $3, output_tokens = output_tokens + $4
            where id = $1 and org_id = $2`,
          [step.runId, step.orgId, answer.usage.inputTokens, answer.usage.outputTokens],
        );
      }
    });
    ctx.log.info('LLM step recorded', { seq: step.seq, finishReason: answer.finishReason, ...answer.usage });
    return { finishReason: answer.finishReason, inputTokens: answer.usage.inputTokens, outputTokens: answer.usage.outputTokens };
  }

  async function finishRun(step: RunStep & { outcome: RunOutcome }): Promise<void> {
    const { outcome } = step;
    await withPrincipal(pool, workerOf(step.orgId), async (tx) => {
      if (outcome.status === 'completed') {
        await tx.query(
          `update public.agent_runs r
              set status = 'completed', completed_at = now(), error = null,
                  output = (select e.payload->>'content' from public.run_events e where e.run_id = r.id and e.seq = $3)
            where r.id = $1 and r.org_id = $2`,
          [step.runId, step.orgId, outcome.outputSeq],
        );
      } else {
        await tx.query(
          `update public.agent_runs set status = $3, completed_at = now(), error = $4 where id = $1 and org_id = $2`,
          [step.runId, step.orgId, outcome.status, outcome.status === 'failed' ? outcome.error : null],
        );
      }
      await appendEvent(tx, step, `run.${outcome.status}`, outcome.status === 'failed' ? { error: outcome.error } : {});
    });
  }

  return { startRun, callLlm, finishRun };
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
