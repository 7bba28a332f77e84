import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A port the OS considers free right now on `host`, reserved against other `bind(0)` callers
 * for about a minute.
 *
 * Linux hands out ephemeral ports at random, so a port we probe and release can be handed
 * straight back to the next `bind(0)`: the Temporal dev server picks its internal ports that
 * way, and a collision with its frontend port made it panic at start-up. Closing one accepted
 * connection from the listening side first leaves the port in TIME_WAIT, which `bind(0)` skips
 * while an explicit bind with SO_REUSEADDR (Node, Go and Postgres all set it) still succeeds.
 * The CLI's and the Go SDK's own free-port helpers do the same.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = net.createServer();
  server.unref();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, resolve);
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  try {
    if (port <= 0) throw new Error(`no free port found on ${host}`);
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const client = net.connect({ host, port });
    const clientClosed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    });
    const serverSide = await accepted;
    // The listening side sends the first FIN, so the TIME_WAIT lands on `port`.
    serverSide.end();
    client.once('end', () => client.end());
    await clientClosed;
    serverSide.destroy();
    return port;
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** True when something accepts TCP connections on host:port. */
export async function isPortListening(host: string, port: number, connectTimeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (listening: boolean): void => {
      socket.removeAllListeners();
      socket.destroy();
      resolve(listening);
    };
    socket.setTimeout(connectTimeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** True when we could bind host:port ourselves, i.e. no other process holds it. */
export async function isPortFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** Resolves once host:port accepts TCP connections; rejects after timeoutMs. */
export async function waitForPort(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await isPortListening(host, port)) return;
    await sleep(100);
  }
  throw new Error(`nothing is listening on ${host}:${port} after ${Math.round(timeoutMs / 1000)} s`);
}
