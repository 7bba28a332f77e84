/**
 * Masks secrets in free text and structures before they leave the process: Sentry events
 * (lib/sentry.ts) and the Temporal SDK's log lines (workers/telemetry.ts), whose messages quote
 * error texts that can echo a key back (an LLM provider's "Incorrect API key provided: sk-…").
 * pino's path redaction (lib/logger.ts) handles known fields; this handles everything else.
 */
const REDACTED = '[redacted]';

const SECRET_KEY = /(authorization|cookie|token|secret|password|passwd|api[-_]?key|credential|private[-_]?key|client[-_]?secret|session|dsn)/i;

const SECRET_VALUE_PATTERNS: Array<[RegExp, (match: string, ...groups: string[]) => string]> = [
  // Authorization header values, wherever they were pasted.
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, (_m, scheme) => `${scheme} ${REDACTED}`],
  // JWTs (Supabase access tokens).
  [/\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}/g, () => REDACTED],
  // Provider keys: OpenAI/OpenRouter (sk-…), HubSpot private apps (pat-…), our org API keys (gap_…).
  [/\b(sk|pk|rk|pat|gap)[-_][A-Za-z0-9_-]{8,}/g, () => REDACTED],
  // key=value pairs of secret-looking keys in messages and URLs.
  [
    /\b(password|passwd|secret|token|api[-_]?key|access[-_]?token|refresh[-_]?token|client[-_]?secret)(["']?\s*[:=]\s*["']?)[^\s"'&,;]+/gi,
    (_m, key, separator) => `${key}${separator}${REDACTED}`,
  ],
  // Credentials in connection strings: postgres://user:password@host
  [/(\/\/[^/\s:@]+:)[^@\s/]+@/g, (_m, userPart) => `${userPart}${REDACTED}@`],
];

/** Masks secret-looking substrings of a string. */
export function scrubString(value: string): string {
  return SECRET_VALUE_PATTERNS.reduce((out, [pattern, replace]) => out.replace(pattern, replace), value);
}

/** Deep copy of `value` with secret keys replaced and every string scrubbed. */
export function scrubValue<T>(value: T, depth = 0): T {
  if (depth > 12) return REDACTED as T;
  if (typeof value === 'string') return scrubString(value) as T;
  if (Array.isArray(value)) return value.map((v) => scrubValue(v, depth + 1)) as T;
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = SECRET_KEY.test(k) && (typeof v === 'string' || typeof v === 'number') ? REDACTED : scrubValue(v, depth + 1);
    }
    return out as T;
  }
  return value;
}

