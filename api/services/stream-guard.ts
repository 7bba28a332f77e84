import type { ServerResponse } from 'node:http';
import { ProblemError } from '../problems.js';

/**
 * Rules every open event stream (SSE) lives by: how many may be open, for how long, while which
 * access holds, and how much may wait for a slow reader.
 */
export interface StreamLimits {
  /** Concurrent streams of one user (or one API key), across its orgs. */
  maxPerUser: number;
  /** Concurrent streams of one organization, all its users and keys together. */
  maxPerOrg: number;
  /** A stream ends after this long; clients reconnect with Last-Event-ID and miss nothing. */
  maxLifetimeMs: number;
  /** How often an open stream re-checks its caller's credential and access (the bound on how long access outlives its end). */
  accessRecheckMs: number;
  /** Bytes waiting for a reader beyond which the reader is dropped instead of buffered for. */
  maxBufferedBytes: number;
}

export const defaultStreamLimits: StreamLimits = {
  maxPerUser: 10,
  maxPerOrg: 100,
  maxLifetimeMs: 15 * 60_000,
  accessRecheckMs: 2_000,
  maxBufferedBytes: 1024 * 1024,
};

/** Counts open streams per caller and per org (in this process), refusing those over the caps. */
export class StreamGuard {
  readonly #open = new Map<string, number>();

  constructor(readonly limits: StreamLimits) {}

  /**
   * Takes a slot for a stream of `callerKey` in `orgId`, or answers 429. The returned function
   * gives it back (idempotent).
   */
  admit(callerKey: string, orgId: string): () => void {
    const keys: Array<[string, number]> = [
      [`caller:${callerKey.toLowerCase()}`, this.limits.maxPerUser],
      [`org:${orgId.toLowerCase()}`, this.limits.maxPerOrg],
    ];
    for (const [key, max] of keys) {
      if ((this.#open.get(key) ?? 0) >= max) {
        throw new ProblemError('rate-limited', 'Too many open event streams; close one (or wait for one to end) and retry.');
      }
    }
    for (const [key] of keys) this.#open.set(key, (this.#open.get(key) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const [key] of keys) {
        const left = (this.#open.get(key) ?? 1) - 1;
        if (left <= 0) this.#open.delete(key);
        else this.#open.set(key, left);
      }
    };
  }
}

export interface SupervisedStream {
  /** Writes a chunk unless the stream has ended; a reader that lets too much pile up is dropped. */
  write(chunk: string): void;
  /** Ends the stream (idempotent). */
  end(): void;
  readonly ended: boolean;
}

/**
 * Supervises one open stream on `res`: ends it at its maximum lifetime and as soon as
 * `stillAllowed` rejects (credential revoked or expired, membership gone, org deleted), and drops
 * a reader whose unsent bytes exceed the limit. `onEnd` runs once, however the stream ends.
 */
export function superviseStream(res: ServerResponse, limits: StreamLimits, stillAllowed: () => Promise<void>, onEnd: () => void): SupervisedStream {
  let ended = false;
  let checking = false;
  const end = (drop = false) => {
    if (ended) return;
    ended = true;
    clearTimeout(lifetime);
    clearInterval(recheck);
    onEnd();
    if (drop) res.destroy();
    else res.end();
  };
  const lifetime = setTimeout(() => end(), limits.maxLifetimeMs);
  const recheck = setInterval(() => {
    if (checking || ended) return;
    checking = true;
    stillAllowed().then(
      () => {
        checking = false;
      },
      () => end(),
    );
  }, limits.accessRecheckMs);
  res.on('close', () => end());
  return {
    write(chunk) {
      if (ended) return;
      res.write(chunk);
      // Node buffers whatever the socket cannot take yet; past the limit the reader is too slow
      // to follow and is cut off (it reconnects with Last-Event-ID) rather than costing memory.
      if (res.writableLength > limits.maxBufferedBytes) end(true);
    },
    end: () => end(),
    get ended() {
      return ended;
    },
  };
}
