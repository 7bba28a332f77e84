import type { ChatMessage, ToolCall } from '../../integrations/llm/types.js';

/** Introduces the lead's memory in the transcript. */
export const MEMORY_PREAMBLE = 'Notes from your earlier conversations with this lead (oldest first):';

/** A row of public.run_events as the activities read it. */
export interface RunEventRow {
  seq: number;
  type: string;
  payload: Record<string, unknown>;
}

/** Prefixes a message a member of the org wrote into a lead's CRM conversation. */
export const STAFF_MARKER = '[Staff, not the lead] ';

/**
 * Rebuilds the chat transcript from the run's instructions, the lead's memory, its input and its event log:
 * `llm.completed` events are the assistant messages (with their tool calls), `tool.completed`
 * events the tool messages, `user.message` events a conversation's messages. Pure, so a retried
 * LLM step sends the provider exactly what the first attempt sent.
 */
export function buildTranscript(run: { instructions: string; input: string; memories?: string[] }, events: RunEventRow[]): ChatMessage[] {
  const messages: ChatMessage[] = [];
  // In a lead's CRM thread both the lead and the team's people write as `user`; the model must
  // tell them apart, or it answers a colleague's note as if the lead had said it.
  const leadThread = events.some((e) => e.type === 'user.message' && e.payload.source === 'crm_webhook');
  if (run.instructions.trim() !== '') messages.push({ role: 'system', content: run.instructions });
  // What was remembered about a CRM lead from earlier conversations (memory.ts), as context the
  // team's instructions come before: the agent's notes, not instructions.
  if (run.memories && run.memories.length > 0) {
    messages.push({ role: 'system', content: `${MEMORY_PREAMBLE}\n${run.memories.map((m) => `- ${m}`).join('\n')}` });
  }
  // A conversation's row has no input of its own: its messages are user.message events.
  if (run.input !== '') messages.push({ role: 'user', content: run.input });
  for (const event of events) {
    const p = event.payload;
    if (event.type === 'llm.completed') {
      const toolCalls = (p.toolCalls as ToolCall[] | undefined) ?? [];
      messages.push({ role: 'assistant', content: (p.content as string | null) ?? null, ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}) });
    } else if (event.type === 'tool.completed') {
      const content = JSON.stringify(p.error !== undefined ? { error: p.error } : (p.result ?? null));
      messages.push({ role: 'tool', tool_call_id: String(p.toolCallId), content });
    } else {
      const staff = leadThread && p.source === 'user';
      messages.push({ role: 'user', content: `${staff ? STAFF_MARKER : ''}${String(p.content ?? '')}` });
    }
  }
  return answerDanglingToolCalls(messages);
}

/**
 * Providers reject an assistant message whose tool calls lack tool answers. A turn interrupted
 * by a newer message (busy policy `interrupt`) leaves such calls behind; they are answered as
 * interrupted, right after the assistant message that made them.
 */
export function answerDanglingToolCalls(messages: ChatMessage[]): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i]!;
    out.push(message);
    if (message.role !== 'assistant' || !message.tool_calls?.length) continue;
    const answered = new Set<string>();
    while (messages[i + 1]?.role === 'tool') {
      const tool = messages[++i] as Extract<ChatMessage, { role: 'tool' }>;
      answered.add(tool.tool_call_id);
      out.push(tool);
    }
    for (const call of message.tool_calls) {
      if (!answered.has(call.id)) {
        out.push({ role: 'tool', tool_call_id: call.id, content: JSON.stringify({ error: 'Interrupted by a newer message; not performed.' }) });
      }
    }
  }
  return out;
}
