/**
 * The team's rules at a conversation's turn: before the agent answers the lead's pending
 * messages, `checkReplyRules` reads the agent's rules as they are now (not as they were when the
 * conversation started) and tells the workflow whether to answer or to record and hold. A read
 * only: the workflow acts on the answer, which its history records, so replay never re-reads.
 */
import { autocommitAsPrincipal } from '../../lib/db.js';
import type { AgentRules, ReplyGate } from '../../lib/agent-rules.js';
import type { RunRef } from './contract.js';
import type { ResolvedAgentRunDeps } from './deps.js';
import { runGone, workerOf } from './run-store.js';

export function createReplyRulesActivities({ pool }: Pick<ResolvedAgentRunDeps, 'pool'>) {
  async function checkReplyRules(ref: RunRef): Promise<ReplyGate> {
    const { rows } = await autocommitAsPrincipal<{ status: AgentRules['status']; response_delay_seconds: number }>(
      pool,
      workerOf(ref.orgId),
      `select a.status, a.response_delay_seconds from public.agent_runs r join public.agents a on a.id = r.agent_id and a.org_id = r.org_id
        where r.id = $1 and r.org_id = $2`,
      [ref.runId, ref.orgId],
    );
    const rules = rows[0];
    if (!rules) throw runGone(ref.runId);
    if (rules.status === 'paused') return { action: 'hold', reason: 'paused' };
    return rules.response_delay_seconds > 0 ? { action: 'answer', delaySeconds: rules.response_delay_seconds } : { action: 'answer' };
  }

  return { checkReplyRules };
}
