/**
 * A customer's webhook receiver: a local HTTP server that verifies each request as the Standard
 * Webhooks specification tells receivers to (written from the spec, not from our signer, so a
 * signing mistake fails the tests): the three headers present, the timestamp within five minutes,
 * the key the base64 after `whsec_`, HMAC-SHA256 over `id.timestamp.rawBody`, any `v1,` entry of
 * the signature header matching in constant time. It can be taken down (connections are dropped
 * without an answer) and brought back up, or made to answer a status.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedWebhook {
  headers: IncomingHttpHeaders;
  body: string;
  /** The signature verified with the receiver's secret (and the timestamp was fresh). */
  verified: boolean;
  at: number;
}

export interface WebhookReceiver {
  url: string;
  /** Requests that got an answer, oldest first. */
  received: ReceivedWebhook[];
  /** Connections refused while down. */
  dropped: number;
  /** The secret to verify with (the API shows it once at endpoint creation). */
  secret: string | undefined;
  /** `down`: connections are dropped; a number: answered with that status; `up`: 204. */
  mode: 'up' | 'down' | number;
  close(): Promise<void>;
}

export function verifyStandardWebhook(secret: string, headers: IncomingHttpHeaders, body: string, nowSeconds = Math.floor(Date.now() / 1000)): boolean {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (typeof id !== 'string' || typeof timestamp !== 'string' || typeof signatures !== 'string') return false;
  if (!/^\d+$/.test(timestamp) || Math.abs(nowSeconds - Number(timestamp)) > 5 * 60) return false;
  if (!secret.startsWith('whsec_')) return false;
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest();
  return signatures.split(' ').some((entry) => {
    const [version, value] = entry.split(',');
    if (version !== 'v1' || !value) return false;
    const given = Buffer.from(value, 'base64');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const receiver: Omit<WebhookReceiver, 'url' | 'close'> = { received: [], dropped: 0, secret: undefined, mode: 'up' };
  const server = createServer((req, res) => {
    if (receiver.mode === 'down') {
      receiver.dropped += 1;
      req.socket.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      receiver.received.push({ headers: req.headers, body, verified: receiver.secret ? verifyStandardWebhook(receiver.secret, req.headers, body) : false, at: Date.now() });
      res.statusCode = typeof receiver.mode === 'number' ? receiver.mode : 204;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(receiver, {
    url: `http://127.0.0.1:${port}/hooks`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}
