/**
 * Assembles a streamed completion from its SSE data payloads: content deltas, tool calls whose
 * names and JSON arguments arrive in pieces, usage (usually in the last chunk) and finish reason.
 * Pure: it sees payload strings, never the network.
 */
import { z } from 'zod';
import { errorReportedInBody, LlmError, providerErrorSchema, schemaMismatch } from './errors.js';
import { toUsage, usageSchema, type Usage } from './completion-parsing.js';
import type { ChatCompletionResult, ToolCall } from './types.js';

const chunkSchema = z.object({
  id: z.string().optional(),
  model: z.string().optional(),
  choices: z
    .array(
      z.object({
        delta: z
          .object({
            content: z.string().nullable().optional(),
            tool_calls: z
              .array(
                z.object({
                  index: z.number().int().nonnegative().optional(),
                  id: z.string().nullable().optional(),
                  function: z
                    .object({ name: z.string().nullable().optional(), arguments: z.string().nullable().optional() })
                    .optional(),
                }),
              )
              .nullable()
              .optional(),
          })
          .nullable()
          .optional(),
        finish_reason: z.string().nullable().optional(),
      }),
    )
    .nullable()
    .optional(),
  usage: usageSchema.nullable().optional(),
  // OpenRouter reports failures that happen after streaming began as an SSE event with `error`.
  error: providerErrorSchema.optional(),
});

export class StreamAssembly {
  readonly #redact: (text: string) => string;
  done = false;
  #sawData = false;
  #content: string[] = [];
  #toolCalls = new Map<number, { id: string; name: string; arguments: string }>();
  #finishReason: string | undefined;
  #usage: Usage | undefined;
  #model: string | undefined;
  #id: string | undefined;

  constructor(redact: (text: string) => string) {
    this.#redact = redact;
  }

  /** Returns the content text delta carried by this event, if any. */
  accept(data: string): string | undefined {
    this.#sawData = true;
    if (data.trim() === '[DONE]') {
      this.done = true;
      return undefined;
    }
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      throw new LlmError('invalid_response', 'LLM provider streamed an event that is not JSON');
    }
    const parsed = chunkSchema.safeParse(json);
    if (!parsed.success) throw schemaMismatch(parsed.error, 200);
    const chunk = parsed.data;
    if (chunk.error) throw errorReportedInBody(chunk.error, this.#redact);

    this.#model ??= chunk.model;
    this.#id ??= chunk.id;
    if (chunk.usage) this.#usage = chunk.usage;

    const choice = chunk.choices?.[0];
    if (!choice) return undefined;
    if (choice.finish_reason) this.#finishReason = choice.finish_reason;
    const delta = choice.delta;
    for (const [position, call] of (delta?.tool_calls ?? []).entries()) {
      const index = call.index ?? position;
      const existing = this.#toolCalls.get(index) ?? { id: '', name: '', arguments: '' };
      if (call.id) existing.id = call.id;
      if (call.function?.name) existing.name += call.function.name;
      if (call.function?.arguments) existing.arguments += call.function.arguments;
      this.#toolCalls.set(index, existing);
    }
    const text = delta?.content;
    if (text) {
      this.#content.push(text);
      return text;
    }
    return undefined;
  }

  result(requestedModel: string, requestId: string | undefined): ChatCompletionResult {
    if (!this.#sawData) throw new LlmError('invalid_response', 'LLM provider answered a stream with no events');
    if (!this.done && this.#finishReason === undefined) {
      throw new LlmError('invalid_response', 'LLM stream ended before the completion finished');
    }
    const toolCalls = [...this.#toolCalls.entries()]
      .sort(([a], [b]) => a - b)
      .map(([index, call]): ToolCall => {
        if (!call.name) throw new LlmError('invalid_response', `LLM streamed tool call ${index} without a name`);
        return { id: call.id || `call_${index}`, type: 'function', function: { name: call.name, arguments: call.arguments } };
      });
    const result: ChatCompletionResult = {
      content: this.#content.length > 0 ? this.#content.join('') : null,
      toolCalls,
      finishReason: this.#finishReason ?? 'unknown',
      usage: toUsage(this.#usage),
      model: this.#model ?? requestedModel,
    };
    const id = requestId ?? this.#id;
    if (id !== undefined) result.requestId = id;
    return result;
  }
}
