import { z } from 'zod';
import { HANDOFF_REASONS } from '../lib/agent-rules.js';
import { runStatusSchema } from '../lib/run-status.js';

/** Zod schemas shared by routes: the single source for validation, types and (later) OpenAPI. */

export const problemSchema = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  instance: z.string().optional(),
  requestId: z.string().optional(),
  errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
});

export { runStatusSchema } from '../lib/run-status.js';

export const runSchema = z.object({
  id: z.uuid(),
  orgId: z.uuid(),
  agentId: z.uuid(),
  status: runStatusSchema,
  workflowId: z.string(),
  output: z.string().nullable(),
  error: z.object({ type: z.string(), message: z.string() }).nullable(),
  usage: z.object({ inputTokens: z.number().int(), outputTokens: z.number().int(), llmCalls: z.number().int(), costUsd: z.number() }),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  completedAt: z.string().nullable(),
  /**
   * Set while the conversation needs a person: the agent's reply could not reach the lead
   * (`reply_failed`: the CRM refused it; `detail` says why). The agent goes on answering; a
   * member clears it with DELETE /v1/orgs/{orgId}/runs/{runId}/attention. Separate from a
   * human handoff, which stops the agent.
   */
  attention: z.object({ reason: z.enum(['reply_failed']), detail: z.string(), since: z.string() }).nullable(),
  /**
   * A conversation handed to people (a salesperson wrote, the lead asked, the agent called
   * handoff_to_human): the agent does not answer until `until`, or until a member resumes it.
   */
  handoff: z
    .object({ reason: z.enum(HANDOFF_REASONS), since: z.string(), until: z.string() })
    .nullable(),
});
