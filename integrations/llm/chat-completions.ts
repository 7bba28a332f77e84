/**
 * Client for any OpenAI-compatible Chat Completions endpoint (OpenRouter, OpenAI, Ollama, vLLM).
 *
 * It never retries: Temporal owns retries, so every failure surfaces once as an LlmError whose
 * `kind` and `retryable` tell the activity how to map it onto an ApplicationFailure.
 * Everything the provider answers is untrusted input and is validated before use.
 */
import { ServerSentEventParser } from '../../lib/sse.js';
import { retryDelayFromHeaders } from './rate-limit-headers.js';
import { parseCompletion } from './completion-parsing.js';
import { describeNetworkError, LlmError, providerMessage, tooLarge } from './errors.js';
import { StreamAssembly } from './stream-assembly.js';
import type { ChatCompletionRequest, ChatCompletionResult } from './types.js';

export interface LlmClientOptions {
  baseUrl: string;
  apiKey?: string;
  timeoutMs: number;
  maxResponseBytes?: number;
  fetch?: typeof fetch;
  appTitle?: string;
}

const DEFAULT_MAX_RESPONSE_BYTES = 2 * 1024 * 1024;
// Error bodies only feed a short message, so there is no reason to hold more of them.
const ERROR_BODY_MAX_BYTES = 64 * 1024;

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
