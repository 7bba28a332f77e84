import { connect as netConnect, isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { Client, Connection, type TLSConfig } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import type { TemporalConnectionConfig } from './config.js';
import { createDataConverter } from './temporal-codec.js';

/** What both `Connection.connect` (client) and `NativeConnection.connect` (worker) accept. */
export interface TemporalConnectionOptions {
  address: string;
  tls?: TLSConfig | false;
  apiKey?: string;
}

/**
 * The one place that turns the TEMPORAL_* variables (lib/config.ts) into connection options, for
 * every process: the API, the workers, `deploy:setup` and `replay`. TLS is on when asked for or
 * implied by a CA, a client certificate, a server name or an API key; with TLS and no CA the
 * system's trusted roots verify the server (Temporal Cloud).
 */
export function temporalConnectionOptions(config: TemporalConnectionConfig): TemporalConnectionOptions {
  const wantsTls = config.TEMPORAL_TLS ?? Boolean(config.TEMPORAL_TLS_CA || config.TEMPORAL_TLS_CERT || config.TEMPORAL_TLS_SERVER_NAME || config.TEMPORAL_API_KEY);
  const options: TemporalConnectionOptions = { address: config.TEMPORAL_ADDRESS };
  if (config.TEMPORAL_API_KEY) options.apiKey = config.TEMPORAL_API_KEY;
  if (!wantsTls) {
    // Without this the SDK would switch TLS on for an API key that an operator sent in clear on purpose.
    if (options.apiKey) options.tls = false;
    return options;
  }
  const tls: TLSConfig = {};
  if (config.TEMPORAL_TLS_CA) tls.serverRootCACertificate = Buffer.from(config.TEMPORAL_TLS_CA);
  if (config.TEMPORAL_TLS_CERT && config.TEMPORAL_TLS_KEY) {
    tls.clientCertPair = { crt: Buffer.from(config.TEMPORAL_TLS_CERT), key: Buffer.from(config.TEMPORAL_TLS_KEY) };
  }
  if (config.TEMPORAL_TLS_SERVER_NAME) tls.serverNameOverride = config.TEMPORAL_TLS_SERVER_NAME;
  options.tls = tls;
  return options;
}

/** How the connection is secured, for start-up logs: never the material itself. */
export function describeTemporalConnection(config: TemporalConnectionConfig): string {
  const options = temporalConnectionOptions(config);
  const parts = [options.address, `namespace ${config.TEMPORAL_NAMESPACE}`];
  if (options.tls) parts.push(options.tls.clientCertPair ? 'mTLS' : 'TLS');
  else parts.push('plaintext');
  if (options.apiKey) parts.push('API key');
  return parts.join(', ');
}

export interface TemporalClientOptions {
  /** `createDataConverter(keyring)` from lib/temporal-codec.ts; the same one the workers use. */
  dataConverter?: DataConverter;
  /**
   * Connect on first use instead of now. The API starts this way so that an unreachable or
   * misconfigured Temporal shows as a failing readiness check with its reason, rather than a
   * process that exits before anyone can ask it why.
   */
  lazy?: boolean;
}

/** A client whose connection offers the operator service too (search attributes, setup). */
export type TemporalClient = Client & { readonly connection: Connection };

/** The one way the API and tools connect to Temporal as a client. */
export async function createTemporalClient(config: TemporalConnectionConfig, options: TemporalClientOptions = {}): Promise<TemporalClient> {
  const connectionOptions = { ...temporalConnectionOptions(config), connectTimeout: 10_000 };
  const connection = options.lazy ? Connection.lazy(connectionOptions) : await Connection.connect(connectionOptions);
  const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE, dataConverter: options.dataConverter ?? createDataConverter(undefined) });
  return client as TemporalClient;
}

/**
 * Why Temporal cannot be reached, in words an operator can act on. The SDKs report a refused
 * client certificate as "transport error" or "Failed to connect"; a handshake of our own with
 * the same address, CA, certificate and server name gets the TLS alert or verification error
 * itself (unknown CA, certificate required, name mismatch) or shows that TLS is not the problem.
 */
export async function diagnoseTemporalConnection(config: TemporalConnectionConfig, timeoutMs = 3_000): Promise<string> {
  const options = temporalConnectionOptions(config);
  const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(options.address);
  if (!match) return `TEMPORAL_ADDRESS ${options.address} is not host:port`;
  const host = match[1]!;
  const port = Number(match[2]);
  const secured = options.tls || undefined;
  return new Promise<string>((resolve) => {
    let settled = false;
    const finish = (message: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(message);
    };
    const timer = setTimeout(() => finish(`no answer from ${options.address} within ${timeoutMs} ms`), timeoutMs);
    const socket = secured
      ? tlsConnect({
          host,
          port,
          ...(secured.serverNameOverride || !isIP(host) ? { servername: secured.serverNameOverride ?? host } : {}),
          ...(secured.serverRootCACertificate ? { ca: Buffer.from(secured.serverRootCACertificate) } : {}),
          ...(secured.clientCertPair ? { cert: Buffer.from(secured.clientCertPair.crt), key: Buffer.from(secured.clientCertPair.key) } : {}),
          ALPNProtocols: ['h2'],
        })
      : netConnect({ host, port });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      const what = err.code === 'ECONNREFUSED' || err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN' ? 'cannot reach' : 'TLS handshake with';
      finish(`${what} ${options.address} failed: ${err.message}`);
    });
    if (secured) {
      // TLS 1.3 servers reject a client certificate after the client's side of the handshake is
      // done: give the alert a moment to arrive before calling the handshake good.
      socket.once('secureConnect', () => {
        // Some servers reject the certificate with an alert (an 'error' above), others by hanging up.
        socket.once('close', () =>
          finish(
            `${options.address} closed the connection right after the TLS handshake: it did not accept our client certificate` +
              (secured.clientCertPair ? ' (TEMPORAL_TLS_CERT is not signed by a CA it trusts)' : ' (none is configured: set TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY)'),
          ),
        );
        setTimeout(() => finish(`TLS handshake with ${options.address} succeeds; the failure is past TLS (API key, namespace or server)`), 1_000);
      });
    } else {
      socket.once('connect', () => finish(`TCP connection to ${options.address} succeeds without TLS; if the server expects TLS, set TEMPORAL_TLS=true`));
    }
  });
}
