// Test-only workflow code: the same change as unpatched-delay.ts, guarded with patched() as
// docs/operations.md prescribes. Old histories (no patch marker) replay without the delay.
import { patched, sleep } from '@temporalio/workflow';
import { agentRun as current } from '../../../workflows/index.js';

export async function agentRun(...args: Parameters<typeof current>): ReturnType<typeof current> {
  if (patched('delay-before-start')) await sleep('1 millisecond');
  return current(...args);
}
