import { describe, expect, it } from 'vitest';
import { LlmError } from '../../integrations/llm/errors.js';
import { StreamAssembly } from '../../integrations/llm/stream-assembly.js';

const noRedaction = (text: string): string => text;
const chunk = (body: Record<string, unknown>): string => JSON.stringify(body);

describe('StreamAssembly', () => {
  it('joins tool-call names and JSON arguments split across chunks, ordered by index', () => {
    const assembly = new StreamAssembly(noRedaction);
    assembly.accept(chunk({ choices: [{ delta: { tool_calls: [{ index: 1, id: 'b', function: { name: 'send', arguments: '{"to":' } }] } }] }));
    assembly.accept(chunk({ choices: [{ delta: { tool_calls: [{ index: 0, id: 'a', function: { name: 'look', arguments: '{}' } }] } }] }));
    assembly.accept(chunk({ choices: [{ delta: { tool_calls: [{ index: 1, function: { arguments: '"lead"}' } }] }, finish_reason: 'tool_calls' }] }));
    assembly.accept('[DONE]');

    const result = assembly.result('requested-model', undefined);
    expect(result.toolCalls).toEqual([
      { id: 'a', type: 'function', function: { name: 'look', arguments: '{}' } },
      { id: 'b', type: 'function', function: { name: 'send', arguments: '{"to":"lead"}' } },
    ]);
    expect(JSON.parse(result.toolCalls[1]!.function.arguments)).toEqual({ to: 'lead' });
    expect(result.finishReason).toBe('tool_calls');
    expect(result.content).toBeNull();
  });

  it('returns each content delta, joins them, and takes usage from the final choiceless chunk', () => {
    const assembly = new StreamAssembly(noRedaction);
    const deltas = [
      assembly.accept(chunk({ id: 'gen-1', model: 'm-1', choices: [{ delta: { content: 'Hel' } }] })),
      assembly.accept(chunk({ choices: [{ delta: { content: 'lo' }, finish_reason: 'stop' }] })),
      assembly.accept(chunk({ choices: [], usage: { prompt_tokens: 12, completion_tokens: 3 } })),
      assembly.accept('[DONE]'),
    ];
    expect(deltas).toEqual(['Hel', 'lo', undefined, undefined]);
    expect(assembly.done).toBe(true);
    expect(assembly.result('requested-model', undefined)).toEqual({
      content: 'Hello',
      toolCalls: [],
      finishReason: 'stop',
      usage: { inputTokens: 12, outputTokens: 3 },
      model: 'm-1',
      requestId: 'gen-1',
    });
  });

  it('rejects a stream cut off before it finished, and an error event mid-stream', () => {
    const cut = new StreamAssembly(noRedaction);
    cut.accept(chunk({ choices: [{ delta: { content: 'partial' } }] }));
    expect(() => cut.result('m', undefined)).toThrow(/ended before the completion finished/);

    const failed = new StreamAssembly(noRedaction);
    let caught: unknown;
    try {
      failed.accept(chunk({ error: { message: 'slow down', code: 429 } }));
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(LlmError);
    expect((caught as LlmError).kind).toBe('rate_limited');
    expect((caught as LlmError).retryable).toBe(true);
  });
});
