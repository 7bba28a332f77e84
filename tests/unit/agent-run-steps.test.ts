import type { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { checkBudgets, planToolCalls } from '../../activities/agent-run/llm-step.js';
import { parseToolArguments } from '../../activities/agent-run/tool-step.js';
import { NonRetryableFailureTypes } from '../../activities/failure-types.js';
import { defineTool, ToolRegistry } from '../../activities/tools/registry.js';

const registry = new ToolRegistry().register(
  defineTool({ name: 'crm_add_note', description: 'note', kind: 'effect', parameters: z.strictObject({ text: z.string().min(1) }), execute: async () => null }),
  defineTool({ name: 'knowledge_search', description: 'search', kind: 'read', parameters: z.strictObject({ query: z.string() }), execute: async () => null }),
);
const call = (name: string) => ({ id: name, type: 'function' as const, function: { name, arguments: '{}' } });

describe('planning the tool calls of an LLM turn', () => {
  it('marks calls of tools the agent may not use as unknown, and approval tools as needing approval', () => {
    const plan = planToolCalls(registry, { allowed_tools: ['crm_add_note', 'knowledge_search'], approval_tools: ['crm_add_note'] }, [
      call('knowledge_search'),
      call('crm_add_note'),
      call('delete_everything'),
    ]);
    expect(plan).toEqual([
      { index: 0, tool: 'knowledge_search', kind: 'read', needsApproval: false },
      { index: 1, tool: 'crm_add_note', kind: 'effect', needsApproval: true },
      { index: 2, tool: null, kind: null, needsApproval: false },
    ]);
  });

  it('treats a registered tool the agent is not allowed as unknown', () => {
    expect(planToolCalls(registry, { allowed_tools: [], approval_tools: [] }, [call('knowledge_search')])).toEqual([
      { index: 0, tool: null, kind: null, needsApproval: false },
    ]);
  });
});

describe("the model's tool arguments", () => {
  const note = registry.get('crm_add_note')!;

  it('parses a JSON object against the schema; empty arguments are an empty object', () => {
    expect(parseToolArguments(note, '{"text":"hello"}')).toEqual({ args: { text: 'hello' } });
    expect(parseToolArguments(registry.get('knowledge_search')!, '  ')).toEqual({ error: expect.stringContaining('query') });
  });

  it('answers invalid JSON and schema problems with an error the model can act on', () => {
    expect(parseToolArguments(note, '{text:')).toEqual({ error: expect.stringMatching(/^The arguments of crm_add_note are not valid JSON/) });
    const invalid = parseToolArguments(note, '{"text":"","extra":1}');
    expect(invalid).toEqual({ error: expect.stringMatching(/^Invalid arguments for crm_add_note: .*text.*Fix them and call the tool again\.$/) });
  });
});

describe('budgets before each LLM call', () => {
  const within = { run_token_budget: 1000, run_tokens: 999, daily_token_quota: '5000', tokens_today: '4999' };

  it('lets a run below its budget and its org below the daily quota call the model', () => {
    expect(() => checkBudgets(within)).not.toThrow();
    expect(() => checkBudgets({ run_token_budget: null, run_tokens: 10 ** 9, daily_token_quota: null, tokens_today: '1000000000' })).not.toThrow();
  });

  it('stops a run that spent its budget, and an org that used its daily quota, without retries', () => {
    const failureOf = (config: typeof within) => {
      try {
        checkBudgets(config);
      } catch (err) {
        return err as ApplicationFailure;
      }
      throw new Error('no failure');
    };
    expect(failureOf({ ...within, run_tokens: 1000 })).toMatchObject({ type: NonRetryableFailureTypes.runBudgetExceeded, nonRetryable: true });
    expect(failureOf({ ...within, tokens_today: '5000' })).toMatchObject({ type: NonRetryableFailureTypes.orgQuotaExceeded, nonRetryable: true });
  });
});
