import type { Client } from '@temporalio/client';
import { ProblemError } from '../problems.js';

/** gRPC codes meaning Temporal did not answer: DEADLINE_EXCEEDED and UNAVAILABLE. */
const UNANSWERED_CODES = new Set([4, 14]);

/** Temporal did not answer (in time), however the SDK wraps the gRPC error. */
export function isTemporalUnanswered(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = (e as { cause?: unknown }).cause) {
    if (UNANSWERED_CODES.has((e as { code?: unknown }).code as number)) return true;
  }
  return false;
}

/** How long a request waits for Temporal to accept a start, a cancel or a schedule change. */
export const DEFAULT_TEMPORAL_CALL_DEADLINE_MS = 5_000;

/**
 * Runs `fn`'s Temporal calls under a deadline. Without one a stalled frontend holds the request
 * (and whatever it holds) until the client's own default, tens of seconds later; with it the
 * caller hears a 503 it can retry within a few seconds. Never call this inside a transaction.
 */
export async function callTemporal<T>(client: Client, deadlineMs: number, fn: () => Promise<T>, unavailableDetail: string): Promise<T> {
  try {
    return await client.connection.withDeadline(Date.now() + deadlineMs, fn);
  } catch (err) {
    if (isTemporalUnanswered(err)) throw new ProblemError('service-unavailable', unavailableDetail);
    throw err;
  }
}
