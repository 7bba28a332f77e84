import { SseParser } from '../state/sse';
import type { RunEvent } from '../state/timeline';
import { TERMINAL_EVENTS } from '../state/timeline';
import { accessToken } from './client';

export interface RunStreamHandlers {
  onEvent(event: RunEvent): void;
  onDelta(delta: { seq: number; text: string }): void;
  onError?(message: string): void;
}

/**
 * Follows a run's event stream (GET /v1/orgs/:orgId/runs/:runId/events) with fetch, since
 * EventSource cannot send the bearer token. Reconnects with Last-Event-ID after a drop, so no
 * durable event is missed or repeated; stops at the run's terminal event or when aborted.
 */
export function followRun(orgId: string, runId: string, handlers: RunStreamHandlers): () => void {
  const controller = new AbortController();
  let lastSeq = 0;
  let finished = false;

  const connect = async (): Promise<void> => {
    const token = await accessToken();
    const res = await fetch(`/v1/orgs/${orgId}/runs/${runId}/events`, {
      headers: { accept: 'text/event-stream', ...(token ? { authorization: `Bearer ${token}` } : {}), ...(lastSeq > 0 ? { 'last-event-id': String(lastSeq) } : {}) },
      signal: controller.signal,
    });
    if (!res.ok || !res.body) {
      const problem = (await res.json().catch(() => null)) as { title?: string; detail?: string } | null;
      handlers.onError?.(problem?.title ? `${problem.title}: ${problem.detail ?? ''}` : `The event stream answered ${res.status}`);
      finished = res.status >= 400 && res.status < 500;
      return;
    }
    const parser = new SseParser();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      for (const message of parser.feed(value)) {
        if (message.event === 'delta') {
          handlers.onDelta(JSON.parse(message.data) as { seq: number; text: string });
          continue;
        }
        const event = JSON.parse(message.data) as RunEvent;
        if (event.seq > lastSeq) lastSeq = event.seq;
        handlers.onEvent(event);
        if (TERMINAL_EVENTS.has(event.type)) finished = true;
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
