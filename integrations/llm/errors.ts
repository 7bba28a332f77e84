/**
 * LlmError and the mapping of provider failures (HTTP statuses, errors reported inside a 200
 * answer, malformed bodies) onto its kinds; `retryable` tells activities what Temporal may retry.
 */
import { z } from 'zod';

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

const PROVIDER_MESSAGE_MAX_CHARS = 300;

export const providerErrorSchema = z.object({
  message: z.string().optional(),
  code: z.union([z.string(), z.number()]).nullable().optional(),
});

export const errorBodySchema = z.object({
  error: z.union([providerErrorSchema, z.string()]).optional(),
  message: z.string().optional(),
});

export function tooLarge(maxBytes: number): LlmError {
  return new LlmError('invalid_response', `LLM response exceeded ${maxBytes} bytes`);
}

export function schemaMismatch(error: z.ZodError, status: number): LlmError {
  const issue = error.issues[0];
  const where = issue && issue.path.length > 0 ? issue.path.join('.') : 'body';
  const what = truncate(issue?.message ?? 'unexpected shape', 120);
  return new LlmError('invalid_response', `LLM response is not a chat completion (${where}: ${what})`, { status });
}

/** A provider error reported inside a 200 answer (OpenRouter does this once streaming has started). */
export function errorReportedInBody(
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

export function providerMessage(bodyText: string): string {
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

export function truncate(text: string, maxChars: number): string {
  const singleLine = text.replace(/\s+/g, ' ').trim();
  return singleLine.length > maxChars ? `${singleLine.slice(0, maxChars)}…` : singleLine;
}

export function describeNetworkError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  // undici reports "fetch failed" and keeps the reason (ECONNREFUSED, ECONNRESET...) in `cause`.
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return `${error.message} (${typeof code === 'string' ? `${code}: ` : ''}${cause.message})`;
  }
  return error.message;
}
