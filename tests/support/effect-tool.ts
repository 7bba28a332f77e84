import { z } from 'zod';
import { defineTool, type AgentTool } from '../../activities/tools/registry.js';

/**
 * A side-effecting agent tool for crash tests: inside runEffectOnce it POSTs to `effectUrl` (a
 * loopback server standing in for a CRM) with the call's idempotency key; `afterEffect` runs
 * once the effect and its ledger row committed (the crash worker kills itself there).
 */
export function httpEffectTool(effectUrl: string, afterEffect: () => void = () => {}): AgentTool {
  return defineTool({
    name: 'test_http_effect',
    description: 'Performs an external write (test tool)',
    kind: 'effect',
    parameters: z.strictObject({ text: z.string().min(1) }),
    async execute(args, ctx) {
      const { result } = await ctx.runEffectOnce(async () => {
        const response = await fetch(effectUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': ctx.idempotencyKey },
          body: JSON.stringify({ text: args.text, runId: ctx.runId }),
        });
        return (await response.json()) as { effectId: number };
      });
      afterEffect();
      return result;
    },
  }) as AgentTool;
}
