/**
 * A fake Sentry ingest endpoint on loopback: accepts envelopes the way sentry.io does
 * (POST /api/<project>/envelope/, newline-delimited JSON: envelope header, then item header and
 * item payload pairs) and keeps them for assertions. Point SENTRY_DSN at `dsn`.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

export interface ReceivedEnvelope {
  raw: string;
  /** When the whole envelope had arrived, and when the answer went back (Date.now()). */
  receivedAt: number;
  answeredAt?: number;
  items: Array<{ header: { type?: string }; payload: unknown }>;
}

export interface FakeSentryIngest {
  dsn: string;
  envelopes: ReceivedEnvelope[];
  /** Error events only (item type "event"). */
  events(): Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/**
 * `responseDelayMs` holds each answer back, as a slow ingest does, so a test can tell a process
 * that waits for its events to be delivered (Sentry.flush) from one that exits with them in flight.
 */
export async function startFakeSentryIngest(options: { responseDelayMs?: number } = {}): Promise<FakeSentryIngest> {
  const envelopes: ReceivedEnvelope[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      const raw = body.toString('utf8');
      let envelope: ReceivedEnvelope | undefined;
      if (req.method === 'POST' && /^\/api\/\d+\/envelope\/?/.test(req.url ?? '')) {
        const lines = raw.split('\n').filter(Boolean);
        const items: ReceivedEnvelope['items'] = [];
        for (let i = 1; i + 1 < lines.length; i += 2) {
          items.push({ header: JSON.parse(lines[i]!) as { type?: string }, payload: JSON.parse(lines[i + 1]!) as unknown });
        }
        envelope = { raw, items, receivedAt: Date.now() };
        envelopes.push(envelope);
      }
      const answer = () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}', () => {
          if (envelope) envelope.answeredAt = Date.now();
        });
      if (options.responseDelayMs) setTimeout(answer, options.responseDelayMs);
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    dsn: `http://fakepublickey@127.0.0.1:${port}/1`,
    envelopes,
    events: () => envelopes.flatMap((e) => e.items.filter((i) => i.header.type === 'event').map((i) => i.payload as Record<string, unknown>)),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
