import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { LlmClient, type LlmClientOptions } from '../../integrations/llm/chat-completions.js';
import { LlmError } from '../../integrations/llm/errors.js';
import type { ChatCompletionRequest } from '../../integrations/llm/types.js';
import { startFakeLlm, type FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';

const API_KEY = 'sk-test-7f3a9c1e5b2d4f6a8c0e';

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
} as const;

const request: ChatCompletionRequest = {
  model: 'sandbox/echo',
  messages: [
    { role: 'system', content: 'You are a sales assistant.' },
    { role: 'user', content: 'Summarise the deal with ACME.' },
  ],
};

let llm: FakeLlmServer;

beforeAll(async () => {
  llm = await startFakeLlm();
});

afterAll(async () => {
  await llm.close();
});

beforeEach(() => {
  llm.reset();
});

function client(overrides: Partial<LlmClientOptions> = {}): LlmClient {
  return new LlmClient({ baseUrl: llm.url, apiKey: API_KEY, timeoutMs: 5_000, ...overrides });
}

async function failureOf(promise: Promise<unknown>): Promise<LlmError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(LlmError);
  return error as LlmError;
}

describe('LlmClient against an OpenAI-compatible server', () => {
  it('returns the text answer with token usage and the wire request it sent', async () => {
    llm.enqueue({ kind: 'text', content: 'ACME is ready to sign.', usage: { inputTokens: 42, outputTokens: 7 } });

    const result = await client({ appTitle: 'gpt-agent-platform' }).complete({
      ...request,
      temperature: 0.2,
      maxOutputTokens: 256,
    });

    expect(result).toMatchObject({
      content: 'ACME is ready to sign.',
      toolCalls: [],
      finishReason: 'stop',
      usage: { inputTokens: 42, outputTokens: 7 },
      model: 'sandbox/echo',
    });
    expect(result.requestId).toMatch(/^chatcmpl-/);
    const received = llm.requests[0];
    expect(received?.method).toBe('POST');
    expect(received?.path).toBe('/v1/chat/completions');
    expect(received?.headers['x-title']).toBe('gpt-agent-platform');
    expect(received?.body).toEqual({
      model: 'sandbox/echo',
      messages: request.messages,
      temperature: 0.2,
      max_tokens: 256,
    });
  });

  it('sends the configured key as a bearer token, and no Authorization header without a key', async () => {
    await client().complete(request);
    await client({ apiKey: undefined }).complete(request);

    expect(llm.requests[0]?.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(llm.requests[1]?.headers.authorization).toBeUndefined();
  });

  it('tolerates a trailing slash in the base URL', async () => {
    await client({ baseUrl: `${llm.url}/` }).complete(request);

    expect(llm.requests[0]?.path).toBe('/v1/chat/completions');
  });

  it('answers with the labelled sandbox reply when nothing is scripted', async () => {
    const result = await client().complete(request);

    expect(result.content).toBe('[sandbox LLM] You said: "Summarise the deal with ACME."');
    expect(result.usage.inputTokens).toBeGreaterThan(0);
    expect(result.usage.outputTokens).toBeGreaterThan(0);
  });

  it('parses tool calls and passes tool definitions and tool results through', async () => {
    llm.enqueue({
      kind: 'tool_calls',
      calls: [
        { id: 'call_weather_1', name: 'get_weather', arguments: '{"city":"Berlin"}' },
        { name: 'get_weather', arguments: '{"city":"Paris"}' },
      ],
    });

    const result = await client().complete({
      ...request,
      messages: [
        ...request.messages,
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call_0', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Rome"}' } }],
        },
        { role: 'tool', tool_call_id: 'call_0', content: '{"celsius":21}' },
      ],
      tools: [weatherTool],
    });

    expect(result.content).toBeNull();
    expect(result.finishReason).toBe('tool_calls');
    expect(result.toolCalls).toHaveLength(2);
    expect(result.toolCalls[0]).toEqual({
      id: 'call_weather_1',
      type: 'function',
      function: { name: 'get_weather', arguments: '{"city":"Berlin"}' },
    });
    expect(result.toolCalls[1]?.function).toEqual({ name: 'get_weather', arguments: '{"city":"Paris"}' });
    expect(result.toolCalls[1]?.id).toBeTruthy();
    expect(llm.requests[0]?.body).toMatchObject({ tools: [weatherTool] });
  });
});

describe('LlmClient streaming', () => {
  it('delivers content deltas in order and assembles the same result as a plain call', async () => {
    const content = 'ACME wants a discount of ten percent before Friday.';
    const usage = { inputTokens: 30, outputTokens: 12 };
    llm.enqueue({ kind: 'text', content, usage, chunkDelayMs: 5 }, { kind: 'text', content, usage });
    const deltas: string[] = [];

    const streamed = await client().complete(request, { onDelta: (text) => deltas.push(text) });
    const plain = await client().complete(request);

    expect(deltas.length).toBeGreaterThan(3);
    expect(deltas.join('')).toBe(content);
    expect(streamed).toMatchObject({ content, toolCalls: [], finishReason: 'stop', usage, model: 'sandbox/echo' });
    expect({ ...streamed, requestId: undefined }).toEqual({ ...plain, requestId: undefined });
    expect(llm.requests[0]?.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    expect(llm.requests[1]?.body).not.toHaveProperty('stream');
  });

  it('assembles tool call arguments that arrive split over several chunks', async () => {
    const longArguments = JSON.stringify({ city: 'Berlin', units: 'metric', days: 5, note: 'for the ACME visit' });
    llm.enqueue({
      kind: 'tool_calls',
      content: 'Checking the weather.',
      calls: [
        { id: 'call_a', name: 'get_weather', arguments: longArguments },
        { id: 'call_b', name: 'get_weather', arguments: '{"city":"Paris"}' },
      ],
      usage: { inputTokens: 50, outputTokens: 20 },
    });
    const deltas: string[] = [];

    const result = await client().complete({ ...request, tools: [weatherTool] }, { onDelta: (text) => deltas.push(text) });

    expect(deltas.join('')).toBe('Checking the weather.');
    expect(result).toEqual({
      content: 'Checking the weather.',
      toolCalls: [
        { id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: longArguments } },
        { id: 'call_b', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
      ],
      finishReason: 'tool_calls',
      usage: { inputTokens: 50, outputTokens: 20 },
      model: 'sandbox/echo',
      requestId: expect.stringMatching(/^chatcmpl-/),
    });
  });

  it('reports zero usage when the stream carries no usage chunk', async () => {
    const encoder = (chunk: object) => `data: ${JSON.stringify(chunk)}\n\n`;
    llm.enqueue({
      kind: 'raw',
      status: 200,
      headers: { 'content-type': 'text/event-stream' },
      body:
        ': OPENROUTER PROCESSING\n\n' +
        encoder({ id: 'gen-1', model: 'm', choices: [{ index: 0, delta: { role: 'assistant', content: 'Hi' } }] }) +
        encoder({ id: 'gen-1', model: 'm', choices: [{ index: 0, delta: {}, finish_reason: 'length' }] }) +
        'data: [DONE]\n\n',
    });

    const result = await client().complete(request, { onDelta: () => undefined });

    expect(result).toMatchObject({ content: 'Hi', finishReason: 'length', usage: { inputTokens: 0, outputTokens: 0 } });
  });

  it('surfaces an error OpenRouter reports inside the stream with its status', async () => {
    llm.enqueue({
      kind: 'raw',
      status: 200,
      headers: { 'content-type': 'text/event-stream' },
      body:
        `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'Par' } }] })}\n\n` +
        `data: ${JSON.stringify({ error: { code: 502, message: 'Provider disconnected' }, choices: [{ index: 0, delta: { content: '' }, finish_reason: 'error' }] })}\n\n`,
    });

    const error = await failureOf(client().complete(request, { onDelta: () => undefined }));

    expect(error).toMatchObject({ kind: 'server', status: 502, retryable: true });
    expect(error.message).toContain('Provider disconnected');
  });

  it('lets an exception thrown by onDelta reach the caller unchanged', async () => {
    const failure = new Error('transcript store unavailable');

    const thrown = await client()
      .complete(request, {
        onDelta: () => {
          throw failure;
        },
      })
      .catch((error: unknown) => error);

    expect(thrown).toBe(failure);
  });

  it('fails as invalid_response when the stream ends before the completion finished', async () => {
    llm.enqueue({
      kind: 'raw',
      status: 200,
      headers: { 'content-type': 'text/event-stream' },
      body: `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'Hal' } }] })}\n\n`,
    });

    const error = await failureOf(client().complete(request, { onDelta: () => undefined }));

    expect(error.kind).toBe('invalid_response');
    expect(error.retryable).toBe(true);
  });
});

describe('LlmClient errors', () => {
  it('classifies 429 as rate_limited and honours Retry-After in seconds', async () => {
    llm.enqueue({ kind: 'error', status: 429, retryAfter: '2' });

    const error = await failureOf(client().complete(request));

    expect(error).toMatchObject({ kind: 'rate_limited', status: 429, retryAfterMs: 2000, retryable: true });
  });

  it('reads Retry-After given as an HTTP date', async () => {
    llm.enqueue({ kind: 'error', status: 429, retryAfter: new Date(Date.now() + 30_000).toUTCString() });

    const error = await failureOf(client().complete(request));

    expect(error.retryAfterMs).toBeGreaterThan(25_000);
    expect(error.retryAfterMs).toBeLessThanOrEqual(30_000);
  });

  it("falls back to OpenAI's x-ratelimit-reset-requests duration", async () => {
    llm.enqueue({
      kind: 'raw',
      status: 429,
      headers: { 'content-type': 'application/json', 'x-ratelimit-reset-requests': '1m30s' },
      body: JSON.stringify({ error: { message: 'Rate limit reached', type: 'requests', code: 'rate_limit_exceeded' } }),
    });

    const error = await failureOf(client().complete(request));

    expect(error).toMatchObject({ kind: 'rate_limited', retryAfterMs: 90_000 });
  });

  it('classifies 400 as rejected with the provider message and never the API key or request', async () => {
    llm.enqueue({
      kind: 'error',
      status: 400,
      message: `This model's maximum context length is 8192 tokens (key ${API_KEY}). ${'x'.repeat(500)}`,
    });

    const error = await failureOf(client().complete(request));

    expect(error).toMatchObject({ kind: 'rejected', status: 400, retryable: false });
    expect(error.message).toContain("This model's maximum context length is 8192 tokens");
    expect(error.message).not.toContain(API_KEY);
    expect(error.message).not.toContain('Summarise the deal');
    expect(error.message.length).toBeLessThan(400);
  });

  it('classifies 401 and 403 as auth, not retryable', async () => {
    const guarded = await startFakeLlm({ requireApiKey: 'sk-the-right-key' });
    try {
      const error = await failureOf(new LlmClient({ baseUrl: guarded.url, apiKey: API_KEY, timeoutMs: 5_000 }).complete(request));
      expect(error).toMatchObject({ kind: 'auth', status: 401, retryable: false });
      expect(error.message).toContain('Incorrect API key provided');
      expect(error.message).not.toContain(API_KEY);
    } finally {
      await guarded.close();
    }

    llm.enqueue({ kind: 'error', status: 403 });
    expect(await failureOf(client().complete(request))).toMatchObject({ kind: 'auth', status: 403 });
  });

  it('classifies 500 as server and retryable', async () => {
    llm.enqueue({ kind: 'error', status: 500 });

    const error = await failureOf(client().complete(request));

    expect(error).toMatchObject({ kind: 'server', status: 500, retryable: true });
  });

  it('rejects an HTML page answered with 200 as invalid_response, retryable', async () => {
    llm.enqueue({
      kind: 'raw',
      status: 200,
      headers: { 'content-type': 'text/html' },
      body: '<html><body><h1>502 Bad Gateway</h1></body></html>',
    });

    const error = await failureOf(client().complete(request));

    expect(error).toMatchObject({ kind: 'invalid_response', retryable: true });
    expect(error.message).toContain('not JSON');
  });

  it('rejects JSON without choices as invalid_response', async () => {
    llm.enqueue({ kind: 'raw', status: 200, headers: { 'content-type': 'application/json' }, body: '{"id":"x","object":"chat.completion"}' });

    const error = await failureOf(client().complete(request));

    expect(error.kind).toBe('invalid_response');
    expect(error.message).toContain('choices');
  });

  it('rejects a body larger than maxResponseBytes as invalid_response', async () => {
    llm.enqueue({ kind: 'text', content: 'y'.repeat(20_000) }, { kind: 'text', content: 'y'.repeat(20_000) });

    const plain = await failureOf(client({ maxResponseBytes: 10_000 }).complete(request));
    const streamed = await failureOf(client({ maxResponseBytes: 10_000 }).complete(request, { onDelta: () => undefined }));

    expect(plain).toMatchObject({ kind: 'invalid_response', retryable: true });
    expect(plain.message).toContain('exceeded 10000 bytes');
    expect(streamed).toMatchObject({ kind: 'invalid_response', retryable: true });
  });

  it('times out a slow reply as timeout, retryable, and the fake survives the disconnect', async () => {
    llm.enqueue({ kind: 'text', content: 'too late', delayMs: 2_000 });
    const started = Date.now();

    const error = await failureOf(client({ timeoutMs: 150 }).complete(request));

    expect(error).toMatchObject({ kind: 'timeout', retryable: true });
    expect(Date.now() - started).toBeLessThan(1_500);
    expect((await client().complete(request)).content).toContain('[sandbox LLM]');
  });

  it('times out a stream that stalls between chunks', async () => {
    llm.enqueue({ kind: 'text', content: 'one two three four', chunkDelayMs: 1_000 });
    const deltas: string[] = [];

    const error = await failureOf(client({ timeoutMs: 300 }).complete(request, { onDelta: (text) => deltas.push(text) }));

    expect(error.kind).toBe('timeout');
    expect(deltas).toEqual(['one ']);
  });

  it('reports a caller abort as aborted, not retryable', async () => {
    llm.enqueue({ kind: 'text', content: 'never seen', delayMs: 2_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);

    const error = await failureOf(client().complete(request, { signal: controller.signal }));

    expect(error).toMatchObject({ kind: 'aborted', retryable: false });
  });

  it('reports an already aborted signal without calling the provider', async () => {
    const error = await failureOf(client().complete(request, { signal: AbortSignal.abort() }));

    expect(error.kind).toBe('aborted');
    expect(llm.requests).toHaveLength(0);
  });

  it('reports a refused connection as network, retryable', async () => {
    const gone = await startFakeLlm();
    await gone.close();

    const error = await failureOf(new LlmClient({ baseUrl: gone.url, apiKey: API_KEY, timeoutMs: 5_000 }).complete(request));

    expect(error).toMatchObject({ kind: 'network', retryable: true });
    expect(error.message).not.toContain(API_KEY);
  });
});
