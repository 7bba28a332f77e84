import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Principal } from '../../lib/principal.js';
import type { RequestPrincipal } from '../auth.js';
import type { RunStreamHub } from './run-stream.js';
import { superviseStream, type StreamGuard } from './stream-guard.js';

const SSE_KEEPALIVE_MS = 15_000;
/** A page of durable events; a full page means more may follow at once. */
const PAGE = 500;

export interface RunStreamDeps {
  hub: RunStreamHub;
  guard: StreamGuard;
  /** The request's credential verified again, as at the start of the request (a revoked key or an expired token throws). */
  reauthenticate(request: FastifyRequest): Promise<RequestPrincipal>;
}

export interface DurableEvent {
  seq: number;
  type: string;
}

export interface LiveFeed {
  /** A durable event with this seq was committed. */
  onEvent(seq: number): void;
  /** The feed is gone (shutdown, lost connection): the client reconnects with Last-Event-ID. */
  onClose(): void;
  /**
   * Writes live, non-durable data (token deltas) in order behind any page of durable events
   * being sent; `lastSeq` is the last durable event the client has, to drop stale data.
   */
  after(write: (send: (chunk: string) => void, lastSeq: number) => void): void;
}

export interface EventStreamSpec<E extends DurableEvent> {
  orgId: string;
  /** The comment the stream opens with (names the stream for someone reading it raw). */
  banner: string;
  /** Access as at the start of the request; throws (404) when the principal may no longer follow. */
  recheck(principal: Principal): Promise<void>;
  eventsAfter(principal: Principal, lastSeq: number): Promise<E[]>;
  /** An event after which nothing more can come (a run's terminal event): the stream ends after it. */
  isLast?(event: E): boolean;
  subscribe(feed: LiveFeed): Promise<() => void>;
}

/**
 * Serves a resumable Server-Sent Events stream of durable events (`id` = seq, resumed with
 * Last-Event-ID), the one way the API streams: admitted by the stream guard (caps per principal
 * and org), supervised (lifetime, access re-checked, slow readers dropped), kept alive, and fed
 * by database notifications, with each event read back under the caller's RLS and sent once, in
 * order, however notifications interleave. The caller has already checked access once.
 */
export async function serveEventStream<E extends DurableEvent>(request: FastifyRequest, reply: FastifyReply, streams: RunStreamDeps, spec: EventStreamSpec<E>): Promise<void> {
  let lastSeq = Number(request.headers['last-event-id'] ?? 0);
  let principal: Principal = request.principal;
  const release = streams.guard.admit(
    principal.kind === 'api_key' ? `key:${principal.keyId}` : principal.kind === 'user' ? `user:${principal.userId}` : principal.kind,
    spec.orgId,
  );

  reply.hijack();
  reply.raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
    'x-request-id': request.id,
  });

  let finished = false;
  let draining: Promise<void> = Promise.resolve();
  let unsubscribe: () => void = () => {};
  // Access is re-checked as it was at the start: the credential again (a revoked key or an
  // expired token fails), then the resource through RLS (a removed member or a deleted org fails).
  const stream = superviseStream(
    reply.raw,
    streams.guard.limits,
    async () => {
      principal = await streams.reauthenticate(request);
      await spec.recheck(principal);
    },
    () => {
      clearInterval(keepalive);
      unsubscribe();
      release();
    },
  );
  const keepalive = setInterval(() => stream.write(': keepalive\n\n'), SSE_KEEPALIVE_MS);
  stream.write(`: ${spec.banner}\n\n`);

  // Serialized so durable events go out once each and in order, however notifications interleave.
  const drain = () => {
    draining = draining
      .then(async () => {
        while (!stream.ended && !finished) {
          const events = await spec.eventsAfter(principal, lastSeq);
          for (const event of events) {
            if (stream.ended) return;
            stream.write(`id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
            lastSeq = event.seq;
            if (spec.isLast?.(event)) finished = true;
          }
          if (events.length < PAGE) break;
        }
        if (finished) stream.end();
      })
      .catch(() => stream.end());
    return draining;
  };

  try {
    unsubscribe = await spec.subscribe({
      onEvent: (seq) => {
        if (seq > lastSeq) void drain();
      },
      onClose: () => stream.end(),
      after: (write) => {
        draining = draining.then(() => {
          if (!stream.ended) write((chunk) => stream.write(chunk), lastSeq);
        });
      },
    });
  } catch {
    // Shutting down, or Postgres is unreachable: the client reconnects with Last-Event-ID.
    stream.end();
    return;
  }
  // The client may have gone while we subscribed.
  if (stream.ended) unsubscribe();
  await drain();
}
