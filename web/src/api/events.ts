import { SseParser, type SseMessage } from '../state/sse';
import type { OrgEvent } from '../state/conversation';
import type { RunEvent } from '../state/timeline';
import { TERMINAL_EVENTS } from '../state/timeline';
import { accessToken } from './client';

export interface RunStreamHandlers {
  onEvent(event: RunEvent): void;
  onDelta(delta: { seq: number; text: string }): void;
  onError?(message: string): void;
}

/**
 * Follows an SSE route with fetch, since EventSource cannot send the bearer token. Reconnects
 * with Last-Event-ID after a drop (backing off to 10 s), so no durable event is missed or
 * repeated; stops when `onMessage` says the stream is finished, on a 4xx, or when aborted.
 * `onMessage` answers the message's seq (to resume after) and whether the stream is done.
 */
function followSse(
  path: string,
  afterSeq: number,
  onMessage: (message: SseMessage) => { seq?: number; finished?: boolean },
  onError?: (message: string) => void,
  onOpen?: () => void,
): () => void {
  const controller = new AbortController();
  let lastSeq = afterSeq;
  let finished = false;

  const connect = async (): Promise<void> => {
    const token = await accessToken();
    const res = await fetch(path, {
      headers: { accept: 'text/event-stream', ...(token ? { authorization: `Bearer ${token}` } : {}), ...(lastSeq > 0 ? { 'last-event-id': String(lastSeq) } : {}) },
      signal: controller.signal,
    });
    if (!res.ok || !res.body) {
      const problem = (await res.json().catch(() => null)) as { title?: string; detail?: string } | null;
      onError?.(problem?.title ? `${problem.title}: ${problem.detail ?? ''}` : `The event stream answered ${res.status}`);
      finished = res.status >= 400 && res.status < 500;
      return;
    }
    onOpen?.();
    const parser = new SseParser();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      for (const message of parser.feed(value)) {
        const { seq, finished: done } = onMessage(message);
        if (seq !== undefined && seq > lastSeq) lastSeq = seq;
        if (done) finished = true;
      }
    }
  };

  void (async () => {
    let delay = 500;
    while (!finished && !controller.signal.aborted) {
      try {
        await connect();
        delay = 500;
      } catch {
        if (controller.signal.aborted) return;
      }
      if (finished || controller.signal.aborted) return;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10_000);
    }
  })();
  return () => controller.abort();
}

/** Follows a run's event stream (GET /v1/orgs/:orgId/runs/:runId/events) until its terminal event. */
export function followRun(orgId: string, runId: string, handlers: RunStreamHandlers): () => void {
  return followSse(
    `/v1/orgs/${orgId}/runs/${runId}/events`,
    0,
    (message) => {
      if (message.event === 'delta') {
        handlers.onDelta(JSON.parse(message.data) as { seq: number; text: string });
        return {};
      }
      const event = JSON.parse(message.data) as RunEvent;
      handlers.onEvent(event);
      return { seq: event.seq, finished: TERMINAL_EVENTS.has(event.type) };
    },
    handlers.onError,
  );
}

/** Follows the org's events (GET /v1/orgs/:orgId/events) after `afterSeq`, for as long as the page wants. */
export function followOrgEvents(orgId: string, afterSeq: number, onEvent: (event: OrgEvent) => void): () => void {
  return followSse(`/v1/orgs/${orgId}/events`, afterSeq, (message) => {
    const event = JSON.parse(message.data) as OrgEvent;
    onEvent(event);
    return { seq: event.seq };
  });
}

/**
 * Follows the hints of GET /v1/orgs/:orgId/conversations/events: `onActivity` when a conversation
 * of the org starts or changes as the list shows it, `onOpen` on every (re)connection, since
 * hints sent while disconnected are not replayed: read the list then too.
 */
export function followConversationActivity(orgId: string, handlers: { onActivity(runId: string): void; onOpen(): void }): () => void {
  return followSse(
    `/v1/orgs/${orgId}/conversations/events`,
    0,
    (message) => {
      if (message.event === 'activity') handlers.onActivity((JSON.parse(message.data) as { runId: string }).runId);
      return {};
    },
    undefined,
    handlers.onOpen,
  );
}
