/**
 * `agentRun`, in parts: its public definitions (definitions.ts), activity options
 * (activity-options.ts), the run's state (state.ts), the turn loop (turn.ts), the steps that
 * wait for a person (human-steps.ts), conversations (conversation.ts) and the workflow function
 * that ties them together (workflow.ts).
 */
export { agentRun } from './workflow.js';
export * from './definitions.js';
