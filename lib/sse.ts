/**
 * Server-sent events (the WHATWG event-stream format) as they arrive in chunks: `push` text,
 * get the complete events' data back. Only `data:` fields matter to our clients; `event:`,
 * `id:` and `retry:` fields and comments are skipped.
 */
/** Collects `data:` payloads per event; comments (OpenRouter sends `: OPENROUTER PROCESSING`) are ignored. */
export class ServerSentEventParser {
  #buffer = '';
  #data: string[] = [];

  push(text: string): string[] {
    this.#buffer += text;
    const events: string[] = [];
    let newline: number;
    while ((newline = this.#buffer.search(/\r\n|\r|\n/)) !== -1) {
      const line = this.#buffer.slice(0, newline);
      const separatorLength = this.#buffer.startsWith('\r\n', newline) ? 2 : 1;
      // A lone \r at the end may be the first half of \r\n still in flight.
      if (separatorLength === 1 && this.#buffer[newline] === '\r' && newline === this.#buffer.length - 1) break;
      this.#buffer = this.#buffer.slice(newline + separatorLength);
      if (line === '') {
        if (this.#data.length > 0) events.push(this.#data.join('\n'));
        this.#data = [];
      } else if (line.startsWith('data:')) {
        this.#data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
      }
    }
    return events;
  }
}
