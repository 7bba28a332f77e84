import { z } from 'zod';

/**
 * The one definition of an agent run's status. The API's schemas and OpenAPI document, the
 * workflow's query and search attribute, and the activities' writes all derive from it (the
 * workflow and activities by type only, so the deterministic bundle carries no zod). The
 * database's check constraint on agent_runs.status lists the same values.
 *
 * queued → running ⇄ awaiting_approval | sleeping → completed | failed | cancelled
 */
export const runStatusSchema = z.enum(['queued', 'running', 'awaiting_approval', 'sleeping', 'completed', 'failed', 'cancelled']);
export type RunStatus = z.infer<typeof runStatusSchema>;

/** The statuses a started run moves between while it works or waits. */
export const liveRunStatusSchema = runStatusSchema.extract(['running', 'awaiting_approval', 'sleeping']);
export type LiveRunStatus = z.infer<typeof liveRunStatusSchema>;

/** The statuses a run ends in; a finished run never changes status again. */
export const finalRunStatusSchema = runStatusSchema.extract(['completed', 'failed', 'cancelled']);
export type FinalRunStatus = z.infer<typeof finalRunStatusSchema>;

/** What the workflow reports (its query and the RunStatus search attribute): every status but queued. */
export type WorkflowRunStatus = LiveRunStatus | FinalRunStatus;
