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
  | { action: 'hold'; reason: 'paused' };
