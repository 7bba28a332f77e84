/**
 * The reads and writes every agent-run activity shares: the run's event log and the agent's
 * configuration. Every statement runs as the worker principal of the run's org, so RLS keeps a
 * run of org A away from org B's rows even if an id were wrong. Every activity that records an
 * event is keyed by the event's `seq` (chosen deterministically by the workflow) and checks for
 * its own event first, so a retry after the write returns what was recorded instead of calling
 * the model or the tool again.
 */
import { ApplicationFailure } from '@temporalio/activity';
import type { Queryable } from '../../lib/db.js';
import type { ToolCall } from '../../integrations/llm/types.js';
import { NonRetryableFailureTypes } from '../failure-types.js';
import type { RunRef, RunStep, ToolCallRef } from './contract.js';
import type { RunEventRow } from './transcript.js';

export function workerOf(orgId: string) {
  return { kind: 'worker', orgId } as const;
}

export function runGone(runId: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(`Run ${runId} or its agent no longer exists`, NonRetryableFailureTypes.runNotFound);
}

/** Inserts event `step.seq` unless it is already recorded; true when this call recorded it. */
export async function appendEvent(tx: Queryable, step: RunStep, type: string, payload: Record<string, unknown>): Promise<boolean> {
  const result = await tx.query(
    `insert into public.run_events (org_id, run_id, seq, type, payload)
     values ($1, $2, $3, $4, $5)
     on conflict (run_id, seq) do nothing`,
    [step.orgId, step.runId, step.seq, type, payload],
  );
  return result.rowCount === 1;
}

export interface AgentConfigRow {
  agent_id: string;
  model: string;
  temperature: string;
  max_output_tokens: number;
  instructions: string;
  allowed_tools: string[];
  approval_tools: string[];
  run_token_budget: number | null;
  input: string;
  /** The lead's memory (latest summaries of its earlier conversations, oldest first); loaded with the transcript only. */
  memories: string[];
  run_tokens: number;
  daily_token_quota: string | null;
  tokens_today: string;
}

/** How many summaries of a lead's earlier conversations the agent is given. */
export const MEMORIES_PER_LEAD = 3;

// A CRM lead's conversation (thread key `crm:<connectionId>:<leadExternalId>`) starts with what
// was remembered about the lead; other runs have none (their thread key matches no memory).
const MEMORIES = `coalesce((select json_agg(m.summary order by m.created_at)
                 from (select summary, created_at from public.lead_memories m
                        where m.org_id = r.org_id and m.thread_key = r.thread_key and m.source_run_id <> r.id
                        order by created_at desc limit ${MEMORIES_PER_LEAD}) m), '[]'::json)`;

/**
 * The agent's configuration and the run's budget state, with the run's events that `events`
 * selects, in one query: every LLM turn and tool call starts here, and each round trip to
 * Postgres counts (a context switch on the worker's host, the network's latency in production).
 */
export async function loadAgentConfig(
  tx: Queryable,
  ref: RunRef,
  events: { transcriptWithSeq: number } | { seqs: number[] },
): Promise<{ config: AgentConfigRow; events: RunEventRow[] }> {
  const eventFilter =
    'transcriptWithSeq' in events ? `(e.type in ('llm.completed', 'tool.completed', 'user.message') or e.seq = $3::int)` : `e.seq = any($3::int[])`;
  const { rows } = await tx.query<AgentConfigRow & { events: RunEventRow[] }>(
    `select a.id as agent_id, a.model, a.temperature, a.max_output_tokens, a.instructions, a.allowed_tools, a.approval_tools,
            a.run_token_budget, r.input, r.input_tokens + r.output_tokens as run_tokens, o.daily_token_quota,
            ${'transcriptWithSeq' in events ? MEMORIES : `'[]'::json`} as memories,
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

/** The tool call of event `llmSeq`; with `alsoSeq`, event `seq` too (one query for both). */
export async function loadToolCall(
  tx: Queryable,
  call: ToolCallRef,
  alsoSeq = false,
): Promise<{ toolCall: ToolCall; config: AgentConfigRow; recorded: RunEventRow | undefined }> {
  const { config, events: rows } = await loadAgentConfig(tx, call, { seqs: alsoSeq ? [call.llmSeq, call.seq] : [call.llmSeq] });
  const llmEvent = rows.find((r) => r.seq === call.llmSeq);
  const toolCall = (llmEvent?.payload.toolCalls as ToolCall[] | undefined)?.[call.index];
  if (!toolCall) {
    throw ApplicationFailure.nonRetryable(`Run ${call.runId} has no tool call ${call.llmSeq}/${call.index}`, NonRetryableFailureTypes.runNotFound);
  }
  return { toolCall, config, recorded: alsoSeq ? rows.find((r) => r.seq === call.seq) : undefined };
}
