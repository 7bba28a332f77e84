import { describe, expect, it } from 'vitest';
import { answerDanglingToolCalls, buildTranscript, type RunEventRow } from '../../activities/agent-run/transcript.js';

const call = (id: string, name = 'knowledge_search') => ({ id, type: 'function' as const, function: { name, arguments: '{}' } });

describe('the transcript an LLM step sends', () => {
  it('starts with the instructions and the run input, then replays the event log as messages', () => {
    const events: RunEventRow[] = [
      { seq: 2, type: 'llm.completed', payload: { content: null, toolCalls: [call('c1')] } },
      { seq: 3, type: 'tool.completed', payload: { toolCallId: 'c1', result: { hits: 2 } } },
      { seq: 4, type: 'llm.completed', payload: { content: 'Done.', toolCalls: [] } },
    ];

    expect(buildTranscript({ instructions: 'Be brief.', input: 'Find the deal' }, events)).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Find the deal' },
      { role: 'assistant', content: null, tool_calls: [call('c1')] },
      { role: 'tool', tool_call_id: 'c1', content: '{"hits":2}' },
      { role: 'assistant', content: 'Done.' },
    ]);
  });

  it("gives a lead's conversation the memory of earlier ones after the instructions, before any message", () => {
    const events: RunEventRow[] = [{ seq: 2, type: 'user.message', payload: { content: 'Hi again' } }];
    expect(buildTranscript({ instructions: 'Be brief.', input: '', memories: ['Wants 20 seats.', 'Asked for a discount.'] }, events)).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'system', content: 'Notes from your earlier conversations with this lead (oldest first):\n- Wants 20 seats.\n- Asked for a discount.' },
      { role: 'user', content: 'Hi again' },
    ]);
    // No memory, no extra message.
    expect(buildTranscript({ instructions: 'Be brief.', input: '', memories: [] }, events)).toHaveLength(2);
  });

  it('shows a tool error to the model as {"error": …} and a missing result as null', () => {
    const events: RunEventRow[] = [
      { seq: 2, type: 'llm.completed', payload: { content: '', toolCalls: [call('a'), call('b')] } },
      { seq: 3, type: 'tool.completed', payload: { toolCallId: 'a', error: 'Unknown tool' } },
      { seq: 4, type: 'tool.completed', payload: { toolCallId: 'b' } },
    ];
    const [, , , first, second] = buildTranscript({ instructions: 'x', input: 'y' }, events);
    expect(first).toEqual({ role: 'tool', tool_call_id: 'a', content: '{"error":"Unknown tool"}' });
    expect(second).toEqual({ role: 'tool', tool_call_id: 'b', content: 'null' });
  });

  it('builds a conversation from its user.message events, without a system message when there are no instructions', () => {
    const events: RunEventRow[] = [
      { seq: 2, type: 'user.message', payload: { content: 'Hi' } },
      { seq: 3, type: 'llm.completed', payload: { content: 'Hello!' } },
      { seq: 4, type: 'user.message', payload: { content: 'Price?' } },
    ];
    expect(buildTranscript({ instructions: '  ', input: '' }, events)).toEqual([
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello!' },
      { role: 'user', content: 'Price?' },
    ]);
  });

  it('answers tool calls an interrupted turn left open, right after the assistant message that made them', () => {
    const events: RunEventRow[] = [
      { seq: 2, type: 'user.message', payload: { content: 'first' } },
      { seq: 3, type: 'llm.completed', payload: { content: null, toolCalls: [call('done'), call('open')] } },
      { seq: 4, type: 'tool.completed', payload: { toolCallId: 'done', result: 1 } },
      { seq: 6, type: 'user.message', payload: { content: 'newer' } },
    ];
    const messages = buildTranscript({ instructions: '', input: '' }, events);
    expect(messages.map((m) => (m.role === 'tool' ? `tool:${m.tool_call_id}` : m.role))).toEqual(['user', 'assistant', 'tool:done', 'tool:open', 'user']);
    expect(messages[3]).toEqual({ role: 'tool', tool_call_id: 'open', content: JSON.stringify({ error: 'Interrupted by a newer message; not performed.' }) });
  });

  it('leaves a transcript whose tool calls are all answered unchanged', () => {
    const messages = [
      { role: 'user' as const, content: 'q' },
      { role: 'assistant' as const, content: null, tool_calls: [call('x')] },
      { role: 'tool' as const, tool_call_id: 'x', content: '1' },
    ];
    expect(answerDanglingToolCalls(messages)).toEqual(messages);
  });
});
