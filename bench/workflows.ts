// Workflow bundle of the benchmark: the real agentRun next to a bare baseline workflow.
import { proxyActivities } from '@temporalio/workflow';

export { agentRun } from '../workflows/agent-run/index.js';

const { noop } = proxyActivities<{ noop(): Promise<void> }>({ startToCloseTimeout: '30 seconds' });

/** The same number of activities as an agent run, doing nothing: what Temporal alone costs. */
export async function baselineRun(activities: number): Promise<void> {
  for (let i = 0; i < activities; i++) await noop();
}
