/**
 * The `Retry-After` header (RFC 9110 §10.2.3): delta-seconds or an HTTP date, as a wait in
 * milliseconds from `nowMs`; undefined when absent or unreadable. Rounded up, so a retry never
 * comes before the server asked. Shared by the LLM and CRM clients, whose providers' other
 * rate-limit headers and body fields stay with each client.
 */
export function parseRetryAfter(value: string | null | undefined, nowMs: number = Date.now()): number | undefined {
  const trimmed = value?.trim();
  if (!trimmed) return undefined;
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.ceil(Number(trimmed) * 1000);
  // Every HTTP date form starts with the day's name; Date.parse alone would take '-5' as a year.
  if (!/^[A-Za-z]/.test(trimmed)) return undefined;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}
