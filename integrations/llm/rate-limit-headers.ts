import { parseRetryAfter } from '../../lib/retry-after.js';

/**
 * How long the provider asks us to wait, in order of precision:
 * `retry-after-ms` (OpenAI), `Retry-After` (RFC 9110: delta-seconds or HTTP date),
 * `x-ratelimit-reset` (OpenRouter: an instant, in epoch seconds or milliseconds),
 * `x-ratelimit-reset-requests` (OpenAI: a duration such as `1s`, `6m0s`, `20ms`).
 */
export function retryDelayFromHeaders(headers: Headers, now: number = Date.now()): number | undefined {
  const retryAfterMs = headers.get('retry-after-ms');
  if (retryAfterMs !== null && /^\s*\d+(\.\d+)?\s*$/.test(retryAfterMs)) return Math.ceil(Number(retryAfterMs));

  const retryAfter = parseRetryAfter(headers.get('retry-after'), now);
  if (retryAfter !== undefined) return retryAfter;

  const reset = headers.get('x-ratelimit-reset')?.trim();
  if (reset && /^\d+(\.\d+)?$/.test(reset)) {
    const value = Number(reset);
    // Small numbers are a delay in seconds; large ones an instant (ms when above 10^10).
    if (value < 1e9) return Math.ceil(value * 1000);
    const instantMs = value > 1e10 ? value : value * 1000;
    return Math.max(0, Math.ceil(instantMs - now));
  }

  const resetRequests = headers.get('x-ratelimit-reset-requests')?.trim();
  if (resetRequests) return parseGoDuration(resetRequests);
  return undefined;
}

function parseGoDuration(text: string): number | undefined {
  const unitMs: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)];
  if (parts.length === 0 || parts.map((part) => part[0]).join('') !== text) return undefined;
  let total = 0;
  for (const [, amount, unit] of parts) total += Number(amount) * (unitMs[unit ?? 's'] ?? 0);
  return Math.ceil(total);
}
