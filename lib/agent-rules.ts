/**
 * The team's rules for an agent, defined once: the zod shapes the agents API validates (and the
 * OpenAPI document shows), and the TS types the services, activities and workflows use (the
 * workflow bundle imports types only, so it carries no zod).
 */
import { z } from 'zod';

/** `paused`: the agent starts nothing and its open conversations stop replying at their next turn. */
export const agentStatusSchema = z.enum(['active', 'paused']);
export type AgentStatus = z.infer<typeof agentStatusSchema>;

const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
const clock = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$|^24:00$/, 'must be HH:MM (24-hour, 24:00 for midnight at the end of a day)');
const minutesOf = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** A weekly schedule in the agent's time zone: when it answers leads. */
export const workingHoursSchema = z
  .strictObject({
    timeZone: z.string().max(100).refine(isTimeZone, 'must be an IANA time zone like Europe/Madrid'),
    /** Outside the hours: `defer` answers when they open (default), `answer` answers anyway. */
    outsideHours: z.enum(['defer', 'answer']).default('defer'),
    intervals: z
      .array(z.strictObject({ day: z.enum(WEEKDAYS), start: clock, end: clock }).refine((i) => minutesOf(i.end) > minutesOf(i.start), { message: 'must be after start', path: ['end'] }))
      .min(1)
      .max(70),
  })
  .superRefine((hours, ctx) => {
    hours.intervals.forEach((a, i) => {
      const clash = hours.intervals.findIndex((b, j) => j < i && b.day === a.day && minutesOf(a.start) < minutesOf(b.end) && minutesOf(b.start) < minutesOf(a.end));
      if (clash >= 0) ctx.addIssue({ code: 'custom', path: ['intervals', i], message: `overlaps intervals.${clash}` });
    });
  });
export type WorkingHours = z.infer<typeof workingHoursSchema>;

/**
 * Seconds until the working hours are open at `now` (0 = open now). The local week position is
 * taken in the schedule's time zone; across a DST change the wait may be off by the shift, which
 * the workflow absorbs by checking again when its timer fires.
 */
export function secondsUntilOpen(hours: WorkingHours, now: Date): number {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', { timeZone: hours.timeZone, weekday: 'short', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' })
      .formatToParts(now)
      .map((p) => [p.type, p.value]),
  );
  const day = WEEKDAYS.indexOf(String(parts.weekday).toLowerCase().slice(0, 3) as (typeof WEEKDAYS)[number]);
  const week = 7 * 86_400;
  const nowSec = day * 86_400 + Number(parts.hour) * 3600 + Number(parts.minute) * 60 + Number(parts.second);
  let wait = Infinity;
  for (const interval of hours.intervals) {
    const start = WEEKDAYS.indexOf(interval.day) * 86_400 + minutesOf(interval.start) * 60;
    const end = WEEKDAYS.indexOf(interval.day) * 86_400 + minutesOf(interval.end) * 60;
    if (nowSec >= start && nowSec < end) return 0;
    wait = Math.min(wait, (((start - nowSec) % week) + week) % week);
  }
  return wait;
}

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
  /** When the agent answers (null = always); see `workingHoursSchema`. */
  workingHours: workingHoursSchema.nullable(),
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
  /** Outside working hours: record the messages, wait `seconds` (a durable timer), check again. */
  | { action: 'defer'; reason: 'outside_hours'; seconds: number }
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
