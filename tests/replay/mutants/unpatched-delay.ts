// Test-only workflow code: today's agentRun with a change shipped WITHOUT patched(): a delay
// before the first step. Replaying any recorded agentRun history against it must fail, which
// proves the replay test catches a non-deterministic change.
import { sleep } from '@temporalio/workflow';
import { agentRun as current } from '../../../workflows/index.js';

export async function agentRun(...args: Parameters<typeof current>): ReturnType<typeof current> {
  await sleep('1 millisecond');
  return current(...args);
}
