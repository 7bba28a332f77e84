/**
 * The team's rules for an agent, defined once: the zod shapes the agents API validates (and the
 * OpenAPI document shows), and the TS types the services, activities and workflows use (the
 * workflow bundle imports types only, so it carries no zod).
 */
import { z } from 'zod';

/** `paused`: the agent starts nothing and its open conversations stop replying at their next turn. */
export const agentStatusSchema = z.enum(['active', 'paused']);
export type AgentStatus = z.infer<typeof agentStatusSchema>;

/** The rule fields of an agent, spread into the agents API's schema. */
export const agentRuleFields = {
  status: agentStatusSchema,
  /**
   * Seconds to wait after the lead's last message before answering (each new message restarts
   * the wait), so a burst gets one reply that reads all of it. 0 answers at once.
   */
  responseDelaySeconds: z.number().int().min(0, 'must not be negative').max(3600),
  /** How long a conversation stays with people after a handoff (unless a member resumes it sooner). */
  handoffMinutes: z.number().int().min(1).max(43_200),
  /**
   * The pipelines and stages in which the agent may reply (a stage without a pipeline: in any
   * pipeline). A lead whose deal is elsewhere is recorded and not answered. null = everywhere.
   */
  replyStages: z
    .array(z.strictObject({ stageId: z.string().min(1).max(100), pipelineId: z.string().min(1).max(100).optional() }))
    .max(100)
    .nullable(),
};

export const agentRulesSchema = z.strictObject(agentRuleFields);
export type AgentRules = z.infer<typeof agentRulesSchema>;

/**
 * What the conversation does with the lead's pending messages at its next turn, decided by the
 * rules (activities/agent-run/reply-rules.ts): answer them, or record them and hold the answer.
 */
export type ReplyGate =
  /** `delaySeconds`: wait for the lead to go quiet this long first (absent = answer at once). */
  | { action: 'answer'; delaySeconds?: number }
  | { action: 'hold'; reason: 'paused' | 'outside_stages' }
  /** `request`: a pending message asks for a person, so the handoff starts now. */
  | { action: 'hold'; reason: 'handoff'; request?: 'lead_asked' };

/** Why a conversation went to people. */
export const HANDOFF_REASONS = ['salesperson_replied', 'lead_asked', 'agent_requested'] as const;
export type HandoffReason = (typeof HANDOFF_REASONS)[number];

/**
 * A lead asking for a person, in the languages our customers' leads write (en, es, pt, ru, de,
 * fr). Deliberately narrow: a false positive silences the agent for a day, so anything subtler
 * is left to the model, which can call `handoff_to_human`.
 */
const ASKS_FOR_PERSON = [
  /\b(talk|speak|chat)\s+(to|with)\s+(a|an|some)?\s*(real\s+|live\s+)?(human|person|people|agent|manager|operator|salesperson|someone)\b/i,
  /\b(real|live)\s+(human|person|agent)\b/i,
  /\b(hablar|habla)\s+con\s+(una?\s+)?(persona|humano|asesor|agente|operador)\b/i,
  /\b(falar)\s+com\s+(uma?\s+)?(pessoa|humano|atendente|consultor)\b/i,
  /(позов(и|ите)|соедини(те)?|хочу|можно)\s+(с\s+)?(живого\s+)?(человек|оператор|менеджер)/i,
  /\b(mit\s+einem\s+(menschen|mitarbeiter))\b/i,
  /\b(parler\s+(à|a|avec)\s+(un|une)\s+(humain|personne|conseiller))\b/i,
];

/** Whether a lead's deal at (pipeline, stage) is inside the agent's reply stages (null = everywhere). */
export function inReplyStages(scope: AgentRules['replyStages'], lead: { pipelineId: string | null; stageId: string | null } | null): boolean {
  if (scope === null) return true;
  if (!lead?.stageId) return false;
  return scope.some((s) => s.stageId === lead.stageId && (s.pipelineId === undefined || s.pipelineId === lead.pipelineId));
}

export function asksForPerson(text: string): boolean {
  return ASKS_FOR_PERSON.some((pattern) => pattern.test(text));
}
