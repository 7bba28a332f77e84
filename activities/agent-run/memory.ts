/**
 * Memory per lead: when a conversation with a CRM lead ends, the model writes a short summary of
 * it, stored for the lead (public.lead_memories); the next conversation with the lead starts with
 * the latest summaries (transcript.ts). Conversations that are not a lead's CRM thread are not
 * remembered. One summary per conversation: a retry finds the stored one and calls nobody.
 */
import { Context } from '@temporalio/activity';
import { withPrincipal } from '../../lib/db.js';
import { recordLlmCall } from '../../lib/metrics.js';
import { LlmError } from '../../integrations/llm/errors.js';
import type { ChatRoute } from '../../integrations/llm/org-provider.js';
import { toActivityFailure, toLlmCallFailure } from '../activity-failure.js';
import { costOf } from '../../lib/pricing.js';
import type { RunRef } from './contract.js';
import type { ResolvedAgentRunDeps } from './deps.js';
import { workerOf } from './run-store.js';

/** The lead of a CRM thread key (`crm:<connectionId>:<leadExternalId>`, lib/agent-triggers.ts), or null. */
export function leadOfThread(threadKey: string | null): { connectionId: string; leadExternalId: string } | null {
  const match = threadKey ? /^crm:([0-9a-f-]{36}):(.{1,100})$/i.exec(threadKey) : null;
  return match ? { connectionId: match[1]!, leadExternalId: match[2]! } : null;
}

/** How the model is asked; the summary is for the agent itself, in the conversation's language. */
export const MEMORY_INSTRUCTIONS =
  'You keep notes for a sales assistant about one lead. Summarize the conversation below in at most five short sentences: ' +
  'who the lead is, what they want, what was offered or promised, and what is still open. Facts only, no greetings. ' +
  'Write in the language of the conversation.';

/** Conversation text handed to the summarizer at most (the newest part is kept). */
const MAX_TRANSCRIPT_CHARS = 24_000;
const MAX_SUMMARY_CHARS = 4_000;

export function createMemoryActivities({ pool, routes, prices }: Pick<ResolvedAgentRunDeps, 'pool' | 'routes' | 'prices'>) {
  async function rememberConversation(ref: RunRef): Promise<'remembered' | 'skipped'> {
    const loaded = await withPrincipal(pool, workerOf(ref.orgId), async (tx) => {
      const { rows } = await tx.query<{ thread_key: string | null; agent_id: string; model: string; remembered: boolean; lines: Array<{ type: string; content: string | null }> }>(
        `select r.thread_key, r.agent_id, a.model,
                exists (select 1 from public.lead_memories m where m.source_run_id = r.id) as remembered,
                coalesce((select json_agg(json_build_object('type', e.type, 'content', coalesce(e.payload->>'content', '')) order by e.seq)
                            from public.run_events e
                           where e.run_id = r.id and e.org_id = r.org_id and e.type in ('user.message', 'llm.completed')), '[]'::json) as lines
           from public.agent_runs r join public.agents a on a.id = r.agent_id and a.org_id = r.org_id
          where r.id = $1 and r.org_id = $2`,
        [ref.runId, ref.orgId],
      );
      return rows[0];
    });
    const lead = leadOfThread(loaded?.thread_key ?? null);
    // Gone (erased), not a lead's thread, already remembered, or nobody said anything.
    if (!loaded || !lead || loaded.remembered || !loaded.lines.some((l) => l.type === 'user.message')) return 'skipped';

    let transcript = loaded.lines
      .filter((l) => l.content)
      .map((l) => `${l.type === 'user.message' ? 'Lead' : 'Agent'}: ${l.content}`)
      .join('\n');
    if (transcript.length > MAX_TRANSCRIPT_CHARS) transcript = transcript.slice(-MAX_TRANSCRIPT_CHARS);

    // The same provider and model as the conversation's turns (llm-step.ts).
    let route: ChatRoute;
    try {
      route = await routes.chatFor(ref.orgId);
    } catch (err) {
      throw toActivityFailure(err);
    }
    const model = route.source === 'org' ? route.model : loaded.model;
    const started = performance.now();
    let answer;
    try {
      answer = await route.client.complete(
        {
          model,
          messages: [
            { role: 'system', content: MEMORY_INSTRUCTIONS },
            { role: 'user', content: transcript },
          ],
          temperature: 0.2,
          maxOutputTokens: 400,
        },
        { signal: Context.current().cancellationSignal },
      );
    } catch (err) {
      recordLlmCall({ model, outcome: err instanceof LlmError ? err.kind : 'error', seconds: (performance.now() - started) / 1000 });
      throw toLlmCallFailure(err, route, ref.orgId);
    }
    const cost = route.source === 'org' ? 0 : costOf(prices, model, answer.usage);
    recordLlmCall({ model, outcome: 'ok', seconds: (performance.now() - started) / 1000, ...answer.usage, costUsd: cost });
    const summary = (answer.content ?? '').trim().slice(0, MAX_SUMMARY_CHARS);
    if (summary === '') return 'skipped';

    // The summary and its tokens on the org's daily usage, in one statement; only a new row counts.
    // A lead erased meanwhile took the run with it: nothing is stored (the insert finds no run).
    await withPrincipal(pool, workerOf(ref.orgId), (tx) =>
      tx.query(
        `with memory as (
           insert into public.lead_memories (org_id, connection_id, lead_external_id, summary, source_run_id, agent_id, input_tokens, output_tokens)
           select $1, $2, $3, $4, r.id, r.agent_id, $6::int, $7::int from public.agent_runs r
            where r.id = $5 and r.org_id = $1
              and exists (select 1 from public.crm_connections c where c.id = $2 and c.org_id = $1)
           on conflict (source_run_id) do nothing
           returning id
         )
         insert into public.usage_daily (org_id, day, shard, llm_calls, input_tokens, output_tokens, cost_usd)
         select $1, (now() at time zone 'utc')::date, private.usage_shard($5), 1, $6::int, $7::int, $8::numeric where exists (select 1 from memory)
         on conflict (org_id, day, shard) do update set
           llm_calls = public.usage_daily.llm_calls + 1,
           input_tokens = public.usage_daily.input_tokens + excluded.input_tokens,
           output_tokens = public.usage_daily.output_tokens + excluded.output_tokens,
           cost_usd = public.usage_daily.cost_usd + excluded.cost_usd`,
        [ref.orgId, lead.connectionId, lead.leadExternalId, summary, ref.runId, answer.usage.inputTokens, answer.usage.outputTokens, cost],
      ),
    );
    return 'remembered';
  }

  return { rememberConversation };
}
