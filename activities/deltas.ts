import type pg from 'pg';
import { RUN_DELTAS_CHANNEL, type RunDelta } from '../lib/run-channels.js';

/** NOTIFY payloads are limited to 8000 bytes; stay well below with room for the JSON envelope. */
const MAX_TEXT_CHARS = 1500;

/**
 * Publishes an LLM step's token deltas while it streams, through Postgres LISTEN/NOTIFY (no new
 * infrastructure). Deltas are coalesced for `flushMs` so a fast stream costs one NOTIFY per
 * interval, not one per token. Best effort by design: the durable answer is the run event the
 * step records when it completes; a lost delta only makes the live view less smooth.
 */
export class DeltaPublisher {
  #buffer = '';
  #timer: NodeJS.Timeout | undefined;
  #lastFlushAt = 0;
  #sending: Promise<void> = Promise.resolve();

  constructor(
    private readonly pool: pg.Pool,
    private readonly target: { runId: string; seq: number },
    private readonly flushMs = 20,
  ) {}

  push(text: string): void {
    this.#buffer += text;
    if (this.#timer) return;
    // Leading edge: the first token goes out at once (time to first token), later ones coalesce.
    const wait = this.#lastFlushAt + this.flushMs - Date.now();
    if (wait <= 0) void this.flush();
    else this.#timer = setTimeout(() => void this.flush(), wait);
  }

  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#lastFlushAt = Date.now();
    const text = this.#buffer;
    this.#buffer = '';
    if (text === '') return this.#sending;
    const pieces: string[] = [];
    for (let start = 0; start < text.length; start += MAX_TEXT_CHARS) pieces.push(text.slice(start, start + MAX_TEXT_CHARS));
    this.#sending = this.#sending.then(async () => {
      for (const piece of pieces) {
        const delta: RunDelta = { ...this.target, text: piece };
        await this.pool.query('select pg_notify($1, $2)', [RUN_DELTAS_CHANNEL, JSON.stringify(delta)]).catch(() => undefined);
      }
    });
    return this.#sending;
  }
}
