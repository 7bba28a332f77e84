import { describe, expect, it } from 'vitest';
import { ServerSentEventParser } from '../../lib/sse.js';
import { parseRetryAfter } from '../../lib/retry-after.js';

describe('parseRetryAfter (RFC 9110 Retry-After)', () => {
  const now = Date.parse('2026-12-06T12:00:00Z');

  it('reads delta-seconds, rounding fractions up', () => {
    expect(parseRetryAfter('2', now)).toBe(2000);
    expect(parseRetryAfter(' 0.3 ', now)).toBe(300);
    expect(parseRetryAfter('0', now)).toBe(0);
  });

  it('reads an HTTP date as the wait until then, never negative', () => {
    expect(parseRetryAfter('Sun, 06 Dec 2026 12:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Sun, 06 Dec 2026 11:59:00 GMT', now)).toBe(0);
  });

  it('answers undefined for a missing or unreadable header', () => {
    for (const value of [null, undefined, '', '  ', 'soon', '-5']) expect(parseRetryAfter(value, now), String(value)).toBeUndefined();
  });
});

describe('ServerSentEventParser', () => {
  it('yields each event once complete, across chunk boundaries and line endings, skipping comments', () => {
    const parser = new ServerSentEventParser();
    expect(parser.push(': OPENROUTER PROCESSING\n\ndata: {"a"')).toEqual([]);
    expect(parser.push(':1}\r')).toEqual([]);
    expect(parser.push('\n\r\ndata: one\ndata:two\n\ndata: [DONE]\n\n')).toEqual(['{"a":1}', 'one\ntwo', '[DONE]']);
  });
});
