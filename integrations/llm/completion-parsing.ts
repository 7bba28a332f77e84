/** Validates a non-streamed completion body: everything a provider answers is untrusted input. */
import { z } from 'zod';
import { errorBodySchema, errorReportedInBody, LlmError, schemaMismatch } from './errors.js';
import type { ChatCompletionResult, ToolCall } from './types.js';

// Providers differ in small ways (Ollama omits ids, some proxies send arguments as objects);
// the schemas accept those variants and reject what cannot be a completion.
export const usageSchema = z.object({
  prompt_tokens: z.number().nonnegative().optional(),
  completion_tokens: z.number().nonnegative().optional(),
});

export type Usage = z.infer<typeof usageSchema>;

const toolArgumentsSchema = z
  .union([z.string(), z.record(z.string(), z.unknown())])
  .transform((value) => (typeof value === 'string' ? value : JSON.stringify(value)));

const toolCallSchema = z.object({
  id: z.string().optional(),
  type: z.string().optional(),
  function: z.object({ name: z.string().min(1), arguments: toolArgumentsSchema.optional() }),
});

const completionSchema = z.object({
  id: z.string().optional(),
  model: z.string().optional(),
  choices: z
    .array(
      z.object({
        message: z.object({
          content: z.string().nullable().optional(),
          tool_calls: z.array(toolCallSchema).nullable().optional(),
        }),
        finish_reason: z.string().nullable().optional(),
      }),
    )
    .min(1),
  usage: usageSchema.nullable().optional(),
});

export function parseCompletion(
  text: string,
  response: Response,
  requestedModel: string,
  requestId: string | undefined,
  redact: (text: string) => string,
): ChatCompletionResult {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    const contentType = response.headers.get('content-type') ?? 'no content type';
    throw new LlmError(
      'invalid_response',
      `LLM provider answered HTTP ${response.status} with a body that is not JSON (${contentType})`,
      { status: response.status },
    );
  }
  const embeddedError = errorBodySchema.safeParse(json);
  if (embeddedError.success && embeddedError.data.error !== undefined && !hasChoices(json)) {
    throw errorReportedInBody(embeddedError.data.error, redact);
  }
  const parsed = completionSchema.safeParse(json);
  if (!parsed.success) throw schemaMismatch(parsed.error, response.status);

  const completion = parsed.data;
  const choice = completion.choices[0];
  const toolCalls = (choice?.message.tool_calls ?? []).map(
    (call, index): ToolCall => ({
      id: call.id || `call_${index}`,
      type: 'function',
      function: { name: call.function.name, arguments: call.function.arguments ?? '' },
    }),
  );
  const result: ChatCompletionResult = {
    content: choice?.message.content ?? null,
    toolCalls,
    finishReason: choice?.finish_reason ?? 'unknown',
    usage: toUsage(completion.usage),
    model: completion.model ?? requestedModel,
  };
  const id = requestId ?? completion.id;
  if (id !== undefined) result.requestId = id;
  return result;
}

function hasChoices(json: unknown): boolean {
  return typeof json === 'object' && json !== null && Array.isArray((json as { choices?: unknown }).choices);
}

export function toUsage(usage: Usage | null | undefined): ChatCompletionResult['usage'] {
  return { inputTokens: usage?.prompt_tokens ?? 0, outputTokens: usage?.completion_tokens ?? 0 };
}
