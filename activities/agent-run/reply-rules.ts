/**
 * The team's rules at a conversation's turn: before the agent answers the lead's pending
 * messages, `checkReplyRules` reads the agent's rules and the conversation's handoff as they are
 * now (not as they were when the conversation started) and tells the workflow whether to answer
 * or to record and hold. A read only: the workflow acts on the answer, which its history
 * records, so replay never re-reads.
 */
import { autocommitAsPrincipal } from '../../lib/db.js';
import { asksForPerson, inReplyStages, secondsUntilOpen, type AgentRules, type ReplyGate } from '../../lib/agent-rules.js';
import type { RunRef } from './contract.js';
import type { ResolvedAgentRunDeps } from './deps.js';
import { runGone, workerOf } from './run-store.js';

interface RulesRow {
  status: AgentRules['status'];
  response_delay_seconds: number;
  handed_off: boolean;
  pending: string[];
  reply_stages: AgentRules['replyStages'];
  working_hours: AgentRules['workingHours'];
  /** The lead's deal as last synced or read (Kommo leads are deals); null when unknown or not a CRM thread. */
  lead: { pipelineId: string | null; stageId: string | null } | null;
}

export function createReplyRulesActivities({ pool }: Pick<ResolvedAgentRunDeps, 'pool'>) {
  /** `pending`: the ids of the messages waiting for this turn (their text stays in Postgres). */
  async function checkReplyRules(ref: RunRef & { pending?: string[] }): Promise<ReplyGate> {
    const { rows } = await autocommitAsPrincipal<RulesRow>(
      pool,
      workerOf(ref.orgId),
      `select a.status, a.response_delay_seconds, a.reply_stages, a.working_hours,
              (select json_build_object('pipelineId', c.pipeline_id, 'stageId', c.stage_id) from public.crm_records c
                where r.thread_key like 'crm:%' and c.org_id = r.org_id and c.connection_id::text = split_part(r.thread_key, ':', 2)
                  and c.object_type = 'deals' and c.external_id = split_part(r.thread_key, ':', 3) and c.deleted_at is null) as lead,
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
    // A lead whose stage is unknown is outside: the intake reads an unknown lead before delivering.
    if (!inReplyStages(rules.reply_stages, rules.lead)) return { action: 'hold', reason: 'outside_stages' };
    if (rules.pending.some(asksForPerson)) return { action: 'hold', reason: 'handoff', request: 'lead_asked' };
    if (rules.working_hours && rules.working_hours.outsideHours !== 'answer') {
      const seconds = secondsUntilOpen(rules.working_hours, new Date());
      if (seconds > 0) return { action: 'defer', reason: 'outside_hours', seconds };
    }
    return rules.response_delay_seconds > 0 ? { action: 'answer', delaySeconds: rules.response_delay_seconds } : { action: 'answer' };
  }

  return { checkReplyRules };
}
