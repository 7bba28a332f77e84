// Workflow bundle of the benchmark: the real agentRun next to bare baseline workflows.
import { condition, defineSignal, proxyActivities, proxyLocalActivities, setHandler } from '@temporalio/workflow';

export { agentRun } from '../workflows/agent-run/index.js';

const { noop } = proxyActivities<{ noop(): Promise<void> }>({ startToCloseTimeout: '30 seconds' });
const { noop: localNoop } = proxyLocalActivities<{ noop(): Promise<void> }>({ startToCloseTimeout: '30 seconds' });

/** The same number of activities as an agent run, doing nothing: what Temporal alone costs. */
export async function baselineRun(activities: number): Promise<void> {
  for (let i = 0; i < activities; i++) await noop();
}

/**
 * The agent run's own shape, doing nothing: `shape` lists its calls in order, 'a' for an activity
 * and 'l' for a local activity (3 LLM turns with 2 read tools: l a l a l a l).
 */
export async function baselineSameShape(shape: string): Promise<void> {
  for (const call of shape) await (call === 'l' ? localNoop() : noop());
}

export const benchDeliverySignal = defineSignal<[{ deliveries: number }]>('delivery');

/**
 * The baseline of `bench:conversations`' webhook intake: a workflow per connection woken by a
 * signal-with-start per delivery, as crmIntake is, that does nothing with it. Polled, so Temporal
 * pays a workflow task per signal on both sides.
 */
export async function trivialIntake(): Promise<void> {
  let received = 0;
  setHandler(benchDeliverySignal, ({ deliveries }) => {
    received += deliveries;
  });
  await condition(() => received < 0);
}
