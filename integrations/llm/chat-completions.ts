/**
 * Client for any OpenAI-compatible Chat Completions endpoint (OpenRouter, OpenAI, Ollama, vLLM).
 *
 * It never retries: Temporal owns retries, so every failure surfaces once as an LlmError whose
 * `kind` and `retryable` tell the activity how to map it onto an ApplicationFailure.
 * Everything the provider answers is untrusted input and is validated before use.
 */
import { z } from 'zod';
import { ServerSentEventParser } from '../../lib/sse.js';
import { retryDelayFromHeaders } from './rate-limit-headers.js';

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export type ChatMessage =
  | { role: 'system' | 'user'; content: string }
  | { role: 'assistant'; content: string | null; tool_calls?: ToolCall[] }
  | { role: 'tool'; content: string; tool_call_id: string };

export interface ToolDefinition {
  type: 'function';
  function: { name: string; description?: string; parameters: Record<string, unknown> };
}

export interface ChatCompletionRequest {
  model: string;
  messages: ChatMessage[];
  temperature?: number;
  maxOutputTokens?: number;
  tools?: ToolDefinition[];
}

export interface ChatCompletionResult {
  content: string | null;
  toolCalls: ToolCall[];
  finishReason: string;
  usage: { inputTokens: number; outputTokens: number };
  model: string;
  requestId?: string;
}

export type LlmErrorKind =
  | 'rate_limited'
  | 'rejected'
  | 'auth'
  | 'server'
  | 'timeout'
  | 'network'
  | 'invalid_response'
  | 'aborted';

const RETRYABLE_KINDS: ReadonlySet<LlmErrorKind> = new Set([
  'rate_limited',
  'server',
  'timeout',
  'network',
  // A flaky proxy can answer an HTML page or cut a body short; Temporal bounds the retries.
  'invalid_response',
]);

export class LlmError extends Error {
  readonly kind: LlmErrorKind;
  readonly status?: number;
  readonly retryAfterMs?: number;
  readonly retryable: boolean;

  constructor(kind: LlmErrorKind, message: string, details: { status?: number; retryAfterMs?: number } = {}) {
    super(message);
    this.name = 'LlmError';
    this.kind = kind;
    if (details.status !== undefined) this.status = details.status;
    if (details.retryAfterMs !== undefined) this.retryAfterMs = details.retryAfterMs;
    this.retryable = RETRYABLE_KINDS.has(kind);
  }
}

export interface LlmClientOptions {
  baseUrl: string;
  apiKey?: string;
  timeoutMs: number;
  maxResponseBytes?: number;
  fetch?: typeof fetch;
  appTitle?: string;
}

const DEFAULT_MAX_RESPONSE_BYTES = 2 * 1024 * 1024;
const PROVIDER_MESSAGE_MAX_CHARS = 300;
// Error bodies only feed a short message, so there is no reason to hold more of them.
const ERROR_BODY_MAX_BYTES = 64 * 1024;

// Providers differ in small ways (Ollama omits ids, some proxies send arguments as objects);
// the schemas accept those variants and reject what cannot be a completion.
const usageSchema = z.object({
  prompt_tokens: z.number().nonnegative().optional(),
  completion_tokens: z.number().nonnegative().optional(),
});

const toolArgumentsSchema = z
  .union([z.string(), z.record(z.string(), z.unknown())])
  .transform((value) => (typeof value === 'string' ? value : JSON.stringify(value)));

const toolCallSchema = z.object({
  id: z.string().optional(),
  type: z.string().optional(),
  function: z.object({ name: z.string().min(1), arguments: toolArgumentsSchema.optional() }),
});

const providerErrorSchema = z.object({
  message: z.string().optional(),
  code: z.union([z.string(), z.number()]).nullable().optional(),
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

const errorBodySchema = z.object({
  error: z.union([providerErrorSchema, z.string()]).optional(),
  message: z.string().optional(),
});

type Usage = z.infer<typeof usageSchema>;

export class LlmClient {
  readonly #endpoint: string;
  readonly #apiKey: string | undefined;
  readonly #timeoutMs: number;
  readonly #maxResponseBytes: number;
  readonly #fetch: typeof fetch;
  readonly #appTitle: string | undefined;

  constructor(options: LlmClientOptions) {
    this.#endpoint = `${options.baseUrl.replace(/\/+$/, '')}/chat/completions`;
    this.#apiKey = options.apiKey || undefined;
    this.#timeoutMs = options.timeoutMs;
    this.#maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#appTitle = options.appTitle;
  }

  /**
   * stream: when onDelta is given, requests `stream: true` (with `stream_options: { include_usage: true }`)
   * and calls onDelta for each content text delta; the result is the same assembled ChatCompletionResult.
   * `timeoutMs` bounds the whole call, including reading a streamed answer.
   */
  async complete(
    request: ChatCompletionRequest,
    options: { signal?: AbortSignal; onDelta?: (text: string) => void } = {},
  ): Promise<ChatCompletionResult> {
    const callerSignal = options.signal;
    if (callerSignal?.aborted) throw new LlmError('aborted', 'LLM call aborted by the caller before it started');
    const timeoutSignal = AbortSignal.timeout(this.#timeoutMs);
    const signal = callerSignal ? AbortSignal.any([callerSignal, timeoutSignal]) : timeoutSignal;
    const streaming = options.onDelta !== undefined;

    try {
      // Called unbound: a fetch implementation may not expect this client as its receiver.
      const fetchImplementation = this.#fetch;
      const response = await fetchImplementation(this.#endpoint, {
        method: 'POST',
        headers: this.#headers(streaming),
        body: JSON.stringify(toWireRequest(request, streaming)),
        signal,
      });
      const requestId = response.headers.get('x-request-id') ?? undefined;

      if (!response.ok) throw await this.#httpError(response);

      if (streaming && options.onDelta) {
        return await this.#readStream(response, request.model, requestId, options.onDelta);
      }
      const text = await this.#readBody(response, this.#maxResponseBytes, true);
      return parseCompletion(text, response, request.model, requestId, this.#redact);
    } catch (error) {
      // The caller's own callback failing is the caller's error, not the provider's.
      if (error instanceof DeltaCallbackFailure) throw error.cause;
      throw this.#classify(error, callerSignal, timeoutSignal);
    }
  }

  #headers(streaming: boolean): Record<string, string> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: streaming ? 'text/event-stream' : 'application/json',
    };
    if (this.#apiKey) headers.authorization = `Bearer ${this.#apiKey}`;
    // OpenRouter shows this as the app name in its activity log (optional attribution header).
    if (this.#appTitle) headers['x-title'] = this.#appTitle;
    return headers;
  }

  async #httpError(response: Response): Promise<LlmError> {
    const status = response.status;
    let bodyText = '';
    try {
      bodyText = await this.#readBody(response, ERROR_BODY_MAX_BYTES, false);
    } catch {
      // The status alone is enough to classify; a body we cannot read adds nothing.
    }
    const detail = providerMessage(this.#redact(bodyText));
    const message = `LLM provider answered HTTP ${status}${detail ? `: ${detail}` : ''}`;

    if (status === 429) {
      const retryAfterMs = retryDelayFromHeaders(response.headers);
      return new LlmError('rate_limited', message, retryAfterMs === undefined ? { status } : { status, retryAfterMs });
    }
    if (status === 401 || status === 403) return new LlmError('auth', message, { status });
    // 408 is the server saying it gave up waiting, which is a timeout and worth another attempt.
    if (status === 408) return new LlmError('timeout', message, { status });
    if (status >= 400 && status < 500) return new LlmError('rejected', message, { status });
    return new LlmError('server', message, { status });
  }

  /** Reads a body while counting bytes so an endless or huge answer cannot exhaust memory. */
  async #readBody(response: Response, maxBytes: number, failWhenTooLarge: boolean): Promise<string> {
    const declared = Number(response.headers.get('content-length'));
    if (failWhenTooLarge && Number.isFinite(declared) && declared > maxBytes) {
      await response.body?.cancel().catch(() => undefined);
      throw tooLarge(maxBytes);
    }
    if (!response.body) return '';
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let received = 0;
    let text = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      received += value.byteLength;
      if (received > maxBytes) {
        await reader.cancel().catch(() => undefined);
        if (failWhenTooLarge) throw tooLarge(maxBytes);
        return text + decoder.decode();
      }
      text += decoder.decode(value, { stream: true });
    }
    return text + decoder.decode();
  }

  async #readStream(
    response: Response,
    requestedModel: string,
    requestId: string | undefined,
    onDelta: (text: string) => void,
  ): Promise<ChatCompletionResult> {
    if (!response.body) throw new LlmError('invalid_response', 'LLM provider answered a stream without a body');
    const assembly = new StreamAssembly(this.#redact);
    const parser = new ServerSentEventParser();
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let received = 0;

    const handle = (data: string): void => {
      const delta = assembly.accept(data);
      if (!delta) return;
      try {
        onDelta(delta);
      } catch (error) {
        throw new DeltaCallbackFailure(error);
      }
    };

    try {
      while (!assembly.done) {
        const { done, value } = await reader.read();
        if (done) {
          for (const data of parser.push(decoder.decode() + '\n\n')) handle(data);
          break;
        }
        received += value.byteLength;
        if (received > this.#maxResponseBytes) throw tooLarge(this.#maxResponseBytes);
        for (const data of parser.push(decoder.decode(value, { stream: true }))) {
          handle(data);
          if (assembly.done) break;
        }
      }
    } finally {
      // After [DONE] (or a failure) nothing more is wanted; release the connection.
      await reader.cancel().catch(() => undefined);
    }

    return assembly.result(requestedModel, requestId);
  }

  #classify(error: unknown, callerSignal: AbortSignal | undefined, timeoutSignal: AbortSignal): LlmError {
    // The caller's abort wins over everything: it is a decision, not a failure.
    if (callerSignal?.aborted) return new LlmError('aborted', 'LLM call aborted by the caller');
    if (error instanceof LlmError) return error;
    if (timeoutSignal.aborted) return new LlmError('timeout', `LLM call timed out after ${this.#timeoutMs} ms`);
    return new LlmError('network', this.#redact(`LLM request failed: ${describeNetworkError(error)}`));
  }

  /** Providers sometimes echo the credential they rejected; it must not reach logs or histories. */
  readonly #redact = (text: string): string =>
    this.#apiKey ? text.split(this.#apiKey).join('[redacted]') : text;
}

class DeltaCallbackFailure {
  constructor(readonly cause: unknown) {}
}

function toWireRequest(request: ChatCompletionRequest, streaming: boolean): Record<string, unknown> {
  const body: Record<string, unknown> = { model: request.model, messages: request.messages };
  if (request.temperature !== undefined) body.temperature = request.temperature;
  if (request.maxOutputTokens !== undefined) body.max_tokens = request.maxOutputTokens;
  if (request.tools && request.tools.length > 0) body.tools = request.tools;
  if (streaming) {
    body.stream = true;
    body.stream_options = { include_usage: true };
  }
  return body;
}

function parseCompletion(
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

class StreamAssembly {
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

function toUsage(usage: Usage | null | undefined): ChatCompletionResult['usage'] {
  return { inputTokens: usage?.prompt_tokens ?? 0, outputTokens: usage?.completion_tokens ?? 0 };
}

function tooLarge(maxBytes: number): LlmError {
  return new LlmError('invalid_response', `LLM response exceeded ${maxBytes} bytes`);
}

function schemaMismatch(error: z.ZodError, status: number): LlmError {
  const issue = error.issues[0];
  const where = issue && issue.path.length > 0 ? issue.path.join('.') : 'body';
  const what = truncate(issue?.message ?? 'unexpected shape', 120);
  return new LlmError('invalid_response', `LLM response is not a chat completion (${where}: ${what})`, { status });
}

/** A provider error reported inside a 200 answer (OpenRouter does this once streaming has started). */
function errorReportedInBody(
  error: z.infer<typeof providerErrorSchema> | string,
  redact: (text: string) => string,
): LlmError {
  const message = redact(typeof error === 'string' ? error : (error.message ?? 'unspecified error'));
  const code = typeof error === 'string' ? undefined : error.code;
  const status = typeof code === 'number' ? code : undefined;
  const text = `LLM provider reported an error: ${truncate(message, PROVIDER_MESSAGE_MAX_CHARS)}`;
  if (status === 429) return new LlmError('rate_limited', text, { status });
  if (status === 401 || status === 403) return new LlmError('auth', text, { status });
  if (status !== undefined && status >= 400 && status < 500) return new LlmError('rejected', text, { status });
  return new LlmError('server', text, status === undefined ? {} : { status });
}

function providerMessage(bodyText: string): string {
  const trimmed = bodyText.trim();
  if (!trimmed) return '';
  try {
    const parsed = errorBodySchema.safeParse(JSON.parse(trimmed));
    if (parsed.success) {
      const { error, message } = parsed.data;
      const text = typeof error === 'string' ? error : (error?.message ?? message);
      if (text) return truncate(text, PROVIDER_MESSAGE_MAX_CHARS);
    }
  } catch {
    // Not JSON; fall through to plain text.
  }
  // An HTML error page from a proxy is noise in a message; plain text is often the actual reason.
  if (trimmed.startsWith('<')) return '';
  return truncate(trimmed, PROVIDER_MESSAGE_MAX_CHARS);
}

function truncate(text: string, maxChars: number): string {
  const singleLine = text.replace(/\s+/g, ' ').trim();
  return singleLine.length > maxChars ? `${singleLine.slice(0, maxChars)}…` : singleLine;
}

function describeNetworkError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  // undici reports "fetch failed" and keeps the reason (ECONNREFUSED, ECONNRESET...) in `cause`.
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return `${error.message} (${typeof code === 'string' ? `${code}: ` : ''}${cause.message})`;
  }
  return error.message;
}
