import { z } from 'zod';
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
});
