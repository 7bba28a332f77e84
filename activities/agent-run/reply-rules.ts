/**
 * The team's rules at a conversation's turn: before the agent answers the lead's pending
 * messages, `checkReplyRules` reads the agent's rules and the conversation's handoff as they are
 * now (not as they were when the conversation started) and tells the workflow whether to answer
 * or to record and hold. A read only: the workflow acts on the answer, which its history
 * records, so replay never re-reads.
 */
import { autocommitAsPrincipal } from '../../lib/db.js';
import { asksForPerson, type AgentRules, type ReplyGate } from '../../lib/agent-rules.js';
import type { RunRef } from './contract.js';
import type { ResolvedAgentRunDeps } from './deps.js';
import { runGone, workerOf } from './run-store.js';

interface RulesRow {
  status: AgentRules['status'];
  response_delay_seconds: number;
  handed_off: boolean;
  pending: string[];
}

export function createReplyRulesActivities({ pool }: Pick<ResolvedAgentRunDeps, 'pool'>) {
  /** `pending`: the ids of the messages waiting for this turn (their text stays in Postgres). */
  async function checkReplyRules(ref: RunRef & { pending?: string[] }): Promise<ReplyGate> {
    const { rows } = await autocommitAsPrincipal<RulesRow>(
      pool,
      workerOf(ref.orgId),
      `select a.status, a.response_delay_seconds,
              coalesce(r.handoff_until > now(), false) as handed_off,
              coalesce((select array_agg(m.content) from public.conversation_messages m
                         where m.run_id = r.id and m.org_id = r.org_id and m.id = any($3::uuid[])), '{}') as pending
         from public.agent_runs r join public.agents a on a.id = r.agent_id and a.org_id = r.org_id
        where r.id = $1 and r.org_id = $2`,
      [ref.runId, ref.orgId, ref.pending ?? []],
    );
    const rules = rows[0];
    if (!rules) throw runGone(ref.runId);
    if (rules.status === 'paused') return { action: 'hold', reason: 'paused' };
    if (rules.handed_off) return { action: 'hold', reason: 'handoff' };
    if (rules.pending.some(asksForPerson)) return { action: 'hold', reason: 'handoff', request: 'lead_asked' };
    return rules.response_delay_seconds > 0 ? { action: 'answer', delaySeconds: rules.response_delay_seconds } : { action: 'answer' };
  }

  return { checkReplyRules };
}
