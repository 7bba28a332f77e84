/**
 * The Postgres LISTEN/NOTIFY channels that carry a run's live progress from the workers (and
 * the database) to the API's SSE streams. Both sides import the contract from here.
 */

/** Durable events: a trigger on public.run_events notifies `runId:seq` at commit. */
export const RUN_EVENTS_CHANNEL = 'run_events';

/** Live token deltas of a streaming LLM step, as JSON `RunDelta`s from the workers. Best effort. */
export const RUN_DELTAS_CHANNEL = 'run_deltas';

export interface RunDelta {
  runId: string;
  /** The seq of the llm.completed event the streaming step will record. */
  seq: number;
  text: string;
}

/**
 * A conversation changed as its org's list shows it (started, activity, status, handoff, flag
 * cleared): a trigger on agent_runs and run_attention notifies `orgId:runId` at commit. A hint
 * to read the list again, not data.
 */
export const CONVERSATION_ACTIVITY_CHANNEL = 'conversation_activity';
