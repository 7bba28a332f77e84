/** One Server-Sent Event as the WHATWG parsing rules define it. */
export interface SseMessage {
  id?: string;
  event: string;
  data: string;
}

/**
 * An incremental text/event-stream parser: feed it decoded chunks as they arrive (they may split
 * lines anywhere) and it returns the complete events. Written by hand because EventSource cannot
 * send an Authorization header, so the console reads the stream with fetch.
 */
export class SseParser {
  #buffer = '';
  #data: string[] = [];
  #event = '';
  #id: string | undefined;

  feed(chunk: string): SseMessage[] {
    this.#buffer += chunk;
    const out: SseMessage[] = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.#buffer);
      // A lone \r at the end may be the first half of \r\n: wait for more.
      if (!match || (match[0] === '\r' && match.index === this.#buffer.length - 1)) break;
      const line = this.#buffer.slice(0, match.index);
      this.#buffer = this.#buffer.slice(match.index + match[0].length);
      if (line === '') {
        if (this.#data.length > 0) {
          out.push({ ...(this.#id !== undefined ? { id: this.#id } : {}), event: this.#event || 'message', data: this.#data.join('\n') });
        }
        this.#data = [];
        this.#event = '';
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') this.#data.push(value);
      else if (field === 'event') this.#event = value;
      else if (field === 'id' && !value.includes('\0')) this.#id = value;
    }
    return out;
  }
}
