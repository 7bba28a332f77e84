/**
 * The sandbox LLM: a fake OpenAI-compatible Chat Completions server on loopback, for
 * `npm run dev` (labelled as a sandbox there), tests and benchmarks. It speaks the real wire format (chat.completion objects, SSE chat.completion.chunk
 * streams with tool-call deltas and a usage chunk, OpenAI error JSON), so the client under test
 * cannot tell it from a provider. Importing this module has no side effects.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type FakeLlmReply =
  | {
      kind: 'text';
      content: string;
      usage?: { inputTokens: number; outputTokens: number };
      delayMs?: number;
      chunkDelayMs?: number;
    }
  | {
      kind: 'tool_calls';
      calls: Array<{ id?: string; name: string; arguments: string }>;
      content?: string;
      usage?: { inputTokens: number; outputTokens: number };
      delayMs?: number;
    }
  | { kind: 'error'; status: number; retryAfter?: string; message?: string; delayMs?: number }
  | { kind: 'raw'; status: number; headers?: Record<string, string>; body: string; delayMs?: number };

/** The request body as the fake has validated it: `model` and `messages` are always present. */
export interface FakeLlmRequestBody {
  model: string;
  messages: Array<{
    role: string;
    content: string | null;
    tool_calls?: Array<{ id: string; type: string; function: { name: string; arguments: string } }>;
    tool_call_id?: string;
    [field: string]: unknown;
  }>;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  tools?: Array<{ type: string; function: { name: string; description?: string; parameters?: unknown } }>;
  temperature?: number;
  max_tokens?: number;
  [field: string]: unknown;
}

export interface RecordedLlmRequest {
  at: number /* Date.now() on arrival */;
  /** Date.now() once the answer was sent (`npm run bench:conversations` subtracts the fake's own time). */
  doneAt?: number;
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

export interface FakeLlmServer {
  /** Base URL to use as LLM_BASE_URL, e.g. http://127.0.0.1:PORT/v1 */
  url: string;
  requests: RecordedLlmRequest[];
  /** Scripted replies, consumed in order (FIFO) by POST /v1/chat/completions. */
  enqueue(...replies: FakeLlmReply[]): void;
  /** Content-based routing, checked before the queue; matchers persist until reset(). */
  setReplyFor(
    matcher: (body: FakeLlmRequestBody) => boolean,
    reply: FakeLlmReply | ((body: FakeLlmRequestBody) => FakeLlmReply),
  ): void;
  /** Clears queue, matchers and recorded requests. */
  reset(): void;
  close(): Promise<void>;
}

export interface FakeLlmOptions {
  port?: number;
  host?: string;
  requireApiKey?: string;
  defaultReply?: (body: FakeLlmRequestBody) => FakeLlmReply;
}

/** What the sandbox model answers to `text`: tests compare replies with it. */
export const sandboxEcho = (text: string): string => `[sandbox LLM] You said: "${text}"`;

export const SANDBOX_MODELS = ['sandbox/echo', 'sandbox/tool-caller'] as const;

const REQUEST_BODY_LIMIT_BYTES = 10 * 1024 * 1024;
const ECHO_MAX_CHARS = 200;

export async function startFakeLlm(options: FakeLlmOptions = {}): Promise<FakeLlmServer> {
  const host = options.host ?? '127.0.0.1';
  const requests: RecordedLlmRequest[] = [];
  let queue: FakeLlmReply[] = [];
  let routes: Array<{
    matcher: (body: FakeLlmRequestBody) => boolean;
    reply: FakeLlmReply | ((body: FakeLlmRequestBody) => FakeLlmReply);
  }> = [];
  let completionCounter = 0;

  const chooseReply = (body: FakeLlmRequestBody): FakeLlmReply => {
    for (const route of routes) {
      if (route.matcher(body)) return typeof route.reply === 'function' ? route.reply(body) : route.reply;
    }
    const scripted = queue.shift();
    if (scripted) return scripted;
    return options.defaultReply ? options.defaultReply(body) : sandboxReply(body);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const at = Date.now();
    const path = new URL(req.url ?? '/', 'http://fake').pathname;
    const rawBody = await readRequestBody(req);
    const body = parseJson(rawBody);
    const recorded: RecordedLlmRequest = { at, method: req.method ?? 'GET', path, headers: { ...req.headers }, body };
    requests.push(recorded);
    res.once('finish', () => {
      recorded.doneAt = Date.now();
    });

    if (options.requireApiKey !== undefined && req.headers.authorization !== `Bearer ${options.requireApiKey}`) {
      sendError(res, 401, 'Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key');
      return;
    }
    if (req.method === 'GET' && path === '/v1/models') {
      sendJson(res, 200, {
        object: 'list',
        data: SANDBOX_MODELS.map((id) => ({ id, object: 'model', created: 1_700_000_000, owned_by: 'sandbox' })),
      });
      return;
    }
    if (req.method === 'POST' && path === '/v1/embeddings') {
      const input = (body as { input?: unknown; model?: unknown } | null)?.input;
      const texts = typeof input === 'string' ? [input] : Array.isArray(input) && input.every((t) => typeof t === 'string') ? (input as string[]) : null;
      if (!texts || typeof (body as { model?: unknown }).model !== 'string') {
        sendError(res, 400, "'input' (a string or an array of strings) and 'model' are required", 'invalid_request_error', null);
        return;
      }
      sendJson(res, 200, {
        object: 'list',
        model: (body as { model: string }).model,
        data: texts.map((text, index) => ({ object: 'embedding', index, embedding: fakeEmbedding(text) })),
        usage: { prompt_tokens: texts.join(' ').length, total_tokens: texts.join(' ').length },
      });
      return;
    }
    if (path !== '/v1/chat/completions') {
      sendError(res, 404, `Unknown path ${req.method} ${path}`, 'invalid_request_error', 'unknown_url');
      return;
    }
    if (req.method !== 'POST') {
      sendError(res, 405, `Method ${req.method} not allowed`, 'invalid_request_error', 'method_not_allowed');
      return;
    }
    const problem = describeInvalidRequest(body, rawBody);
    if (problem) {
      sendError(res, 400, problem, 'invalid_request_error', null);
      return;
    }
    const request = body as FakeLlmRequestBody;

    const disconnected = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) disconnected.abort();
    });

    let reply: FakeLlmReply;
    try {
      reply = chooseReply(request);
    } catch (error) {
      sendError(res, 500, `Fake LLM reply script failed: ${String(error)}`, 'server_error', null);
      return;
    }
    if (reply.delayMs && !(await sleep(reply.delayMs, disconnected.signal))) return;

    completionCounter += 1;
    const completion: CompletionContext = {
      id: `chatcmpl-sandbox-${completionCounter}`,
      created: Math.floor(Date.now() / 1000),
      model: request.model,
      promptTokens: estimateTokens(request.messages.map((message) => message.content ?? '').join('\n')),
    };

    switch (reply.kind) {
      case 'error':
        sendError(res, reply.status, reply.message ?? defaultErrorMessage(reply.status), ...errorTypeAndCode(reply.status), {
          ...(reply.retryAfter !== undefined ? { 'retry-after': reply.retryAfter } : {}),
        });
        return;
      case 'raw':
        res.writeHead(reply.status, { 'content-type': 'text/plain; charset=utf-8', ...reply.headers });
        res.end(reply.body);
        return;
      case 'text':
      case 'tool_calls':
        if (request.stream === true) {
          await streamCompletion(res, completion, reply, request.stream_options?.include_usage === true, disconnected.signal);
        } else {
          sendJson(res, 200, completionObject(completion, reply));
        }
        return;
    }
  };

  const server = createServer((req, res) => {
    // Writes after the client went away must not crash the test process.
    res.on('error', () => undefined);
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent && !res.destroyed) {
        sendError(res, 500, `Fake LLM failed: ${String(error)}`, 'server_error', null);
      } else {
        res.destroy();
      }
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  return {
    url: `http://${urlHost}:${port}/v1`,
    requests,
    enqueue(...replies) {
      queue.push(...replies);
    },
    setReplyFor(matcher, reply) {
      routes.push({ matcher, reply });
    },
    reset() {
      queue = [];
      routes = [];
      requests.length = 0;
    },
    close() {
      return new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // Keep-alive sockets would otherwise hold close() open for the keep-alive timeout.
        server.closeAllConnections();
      });
    },
  };
}

interface CompletionContext {
  id: string;
  created: number;
  model: string;
  promptTokens: number;
}

type AnswerReply = Extract<FakeLlmReply, { kind: 'text' | 'tool_calls' }>;

/** The answer when nothing is scripted: deterministic, and plainly labelled as the sandbox. */
function sandboxReply(body: FakeLlmRequestBody): FakeLlmReply {
  const lastUserMessage = [...body.messages].reverse().find((message) => message.role === 'user');
  // Content may arrive as an array of parts from other clients; echo those as JSON.
  const content: unknown = lastUserMessage?.content ?? '';
  const said = (typeof content === 'string' ? content : JSON.stringify(content)).replace(/\s+/g, ' ').trim();
  const echoed = said.length > ECHO_MAX_CHARS ? `${said.slice(0, ECHO_MAX_CHARS)}…` : said;
  return { kind: 'text', content: sandboxEcho(echoed) };
}

function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

function usageOf(context: CompletionContext, reply: AnswerReply): Record<string, number> {
  const answerText =
    reply.kind === 'text'
      ? reply.content
      : (reply.content ?? '') + reply.calls.map((call) => call.name + call.arguments).join('');
  const prompt = reply.usage?.inputTokens ?? context.promptTokens;
  const completion = reply.usage?.outputTokens ?? estimateTokens(answerText);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

function toolCallsOf(reply: AnswerReply, completionId: string) {
  if (reply.kind !== 'tool_calls') return [];
  return reply.calls.map((call, index) => ({
    id: call.id ?? `call_${completionId.replace(/\W/g, '')}_${index}`,
    type: 'function' as const,
    function: { name: call.name, arguments: call.arguments },
  }));
}

function completionObject(context: CompletionContext, reply: AnswerReply): Record<string, unknown> {
  const toolCalls = toolCallsOf(reply, context.id);
  const content = reply.kind === 'text' ? reply.content : (reply.content ?? null);
  return {
    id: context.id,
    object: 'chat.completion',
    created: context.created,
    model: context.model,
    system_fingerprint: 'fp_sandbox',
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content,
          refusal: null,
          ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
        },
        logprobs: null,
        finish_reason: toolCalls.length > 0 ? 'tool_calls' : 'stop',
      },
    ],
    usage: usageOf(context, reply),
  };
}

async function streamCompletion(
  res: ServerResponse,
  context: CompletionContext,
  reply: AnswerReply,
  includeUsage: boolean,
  disconnected: AbortSignal,
): Promise<void> {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
  });
  const send = (choices: unknown[], extra: Record<string, unknown> = {}): void => {
    if (disconnected.aborted) return;
    const chunk = {
      id: context.id,
      object: 'chat.completion.chunk',
      created: context.created,
      model: context.model,
      system_fingerprint: 'fp_sandbox',
      choices,
      // OpenAI puts `usage: null` on every chunk but the last once include_usage is requested.
      ...(includeUsage ? { usage: null } : {}),
      ...extra,
    };
    res.write(`data: ${JSON.stringify(chunk)}\n\n`);
  };
  const choice = (delta: Record<string, unknown>, finishReason: string | null = null) => ({
    index: 0,
    delta,
    logprobs: null,
    finish_reason: finishReason,
  });

  const toolCalls = toolCallsOf(reply, context.id);
  const content = reply.kind === 'text' ? reply.content : (reply.content ?? null);
  const chunkDelayMs = reply.kind === 'text' ? (reply.chunkDelayMs ?? 0) : 0;

  send([choice({ role: 'assistant', content: toolCalls.length > 0 && !content ? null : '', refusal: null })]);
  for (const [position, piece] of splitContent(content ?? '').entries()) {
    if (position > 0 && chunkDelayMs > 0 && !(await sleep(chunkDelayMs, disconnected))) return;
    send([choice({ content: piece })]);
  }
  for (const [index, call] of toolCalls.entries()) {
    send([
      choice({
        tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }],
      }),
    ]);
    for (const fragment of splitFixed(call.function.arguments, 8)) {
      send([choice({ tool_calls: [{ index, function: { arguments: fragment } }] })]);
    }
  }
  send([choice({}, toolCalls.length > 0 ? 'tool_calls' : 'stop')]);
  if (includeUsage) send([], { usage: usageOf(context, reply) });
  if (!disconnected.aborted) res.end('data: [DONE]\n\n');
}

/** Word-sized pieces, the way a tokenizer-driven stream delivers text. */
function splitContent(text: string): string[] {
  return text.match(/\s*\S+\s*|\s+/g) ?? [];
}

function splitFixed(text: string, size: number): string[] {
  const pieces: string[] = [];
  for (let start = 0; start < text.length; start += size) pieces.push(text.slice(start, start + size));
  return pieces;
}

function describeInvalidRequest(body: unknown, rawBody: string): string | undefined {
  if (rawBody.trim() === '') return 'We could not parse the JSON body of your request: empty body.';
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return 'We could not parse the JSON body of your request.';
  }
  const { model, messages } = body as { model?: unknown; messages?: unknown };
  if (typeof model !== 'string' || model === '') return "Missing required parameter: 'model'.";
  if (!Array.isArray(messages) || messages.length === 0) return "Missing required parameter: 'messages'.";
  for (const [index, message] of messages.entries()) {
    if (typeof message !== 'object' || message === null || typeof (message as { role?: unknown }).role !== 'string') {
      return `Invalid value for 'messages[${index}]': each message needs a role.`;
    }
  }
  return undefined;
}

function errorTypeAndCode(status: number): [type: string, code: string | null] {
  if (status === 401) return ['invalid_request_error', 'invalid_api_key'];
  if (status === 403) return ['permission_error', 'unsupported_country_region_territory'];
  if (status === 404) return ['invalid_request_error', 'model_not_found'];
  if (status === 429) return ['requests', 'rate_limit_exceeded'];
  if (status >= 500) return ['server_error', null];
  return ['invalid_request_error', null];
}

function defaultErrorMessage(status: number): string {
  if (status === 429) return 'Rate limit reached for requests. Please try again later.';
  if (status >= 500) return 'The server had an error while processing your request. Sorry about that!';
  return `Request failed with status ${status}.`;
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function sendError(
  res: ServerResponse,
  status: number,
  message: string,
  type: string,
  code: string | null,
  headers: Record<string, string> = {},
): void {
  sendJson(res, status, { error: { message, type, param: null, code } }, headers);
}

async function readRequestBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > REQUEST_BODY_LIMIT_BYTES) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** Resolves true after `ms`, or false as soon as the client disconnects. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * The fake's embeddings: deterministic, 64 dimensions, the hashed character trigrams of the
 * lower-cased words. Not semantic (no synonyms), but texts that share word pieces are close,
 * which is what tests of the vector path need; the benchmark labels fused figures accordingly.
 */
export function fakeEmbedding(text: string, dims = 64): number[] {
  const vector = new Array<number>(dims).fill(0);
  for (const word of text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []) {
    const padded = ` ${word} `;
    for (let i = 0; i + 3 <= padded.length; i++) {
      let h = 2166136261;
      for (const ch of padded.slice(i, i + 3)) h = Math.imul(h ^ ch.codePointAt(0)!, 16777619);
      vector[(h >>> 0) % dims]! += 1;
    }
  }
  return vector;
}
