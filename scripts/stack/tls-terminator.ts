/**
 * Development and tests only: mutual TLS in front of the Temporal dev server, which speaks
 * plaintext gRPC only (`temporal server start-dev` has no TLS options). The terminator demands a
 * client certificate signed by its CA, negotiates ALPN `h2` (the Rust core refuses a TLS server
 * that does not) and pipes the decrypted bytes to the dev server's port unchanged: gRPC clients
 * send the HTTP/2 preface right after the handshake, and the dev server speaks HTTP/2 with prior
 * knowledge. Certificates are throwaway ones made with `openssl` when the stack starts.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The only name in the terminator's certificate. */
export const TEST_SERVER_NAME = 'temporal-frontend.test';

export interface TestCertificates {
  dir: string;
  /** The CA the terminator trusts for clients and that signed its own certificate. */
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A client certificate from another CA: the terminator must refuse it. */
  strangerCert: string;
  strangerKey: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      throw new Error('openssl is not installed; the TLS tests need it (Debian: apt-get install openssl)', { cause: err });
    }
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr ?? e.message}`, { cause: err });
  }
}

async function issue(dir: string, name: string, ca: string, usage: 'serverAuth' | 'clientAuth'): Promise<void> {
  // P-256 keys: generated in milliseconds, accepted by rustls, grpc-js and Go alike.
  await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`], dir);
  // rustls matches subjectAltName only, never the CN. The server's name is not the address
  // clients dial (127.0.0.1), so they must set TEMPORAL_TLS_SERVER_NAME, as behind a load balancer.
  await writeFile(path.join(dir, `${name}.ext`), `subjectAltName=DNS:${usage === 'serverAuth' ? TEST_SERVER_NAME : name}\nextendedKeyUsage=${usage}\nbasicConstraints=CA:FALSE\n`);
  await openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '2', '-out', `${name}.crt`, '-extfile', `${name}.ext`], dir);
}

async function authority(dir: string, name: string): Promise<void> {
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.crt`], dir);
}

/** A CA, a server and a client certificate signed by it, and a client certificate from a stranger CA. */
export async function createTestCertificates(dir: string): Promise<TestCertificates> {
  await mkdir(dir, { recursive: true });
  await Promise.all([authority(dir, 'ca'), authority(dir, 'stranger-ca')]);
  await Promise.all([issue(dir, 'server', 'ca', 'serverAuth'), issue(dir, 'client', 'ca', 'clientAuth'), issue(dir, 'stranger', 'stranger-ca', 'clientAuth')]);
  const file = (name: string) => path.join(dir, name);
  return {
    dir,
    caCert: file('ca.crt'),
    serverCert: file('server.crt'),
    serverKey: file('server.key'),
    clientCert: file('client.crt'),
    clientKey: file('client.key'),
    strangerCert: file('stranger.crt'),
    strangerKey: file('stranger.key'),
  };
}

export interface TlsTerminator {
  /** `127.0.0.1:<port>`; the certificate names TEST_SERVER_NAME, not this address. */
  address: string;
  port: number;
  stop(): Promise<void>;
}

export async function startTlsTerminator(opts: { certificates: TestCertificates; upstreamPort: number; upstreamHost?: string }): Promise<TlsTerminator> {
  const [key, cert, ca] = await Promise.all([readFile(opts.certificates.serverKey), readFile(opts.certificates.serverCert), readFile(opts.certificates.caCert)]);
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({ key, cert, ca, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2'], minVersion: 'TLSv1.2' }, (down) => {
    const up = net.connect(opts.upstreamPort, opts.upstreamHost ?? '127.0.0.1');
    sockets.add(down).add(up);
    const close = () => {
      down.destroy();
      up.destroy();
      sockets.delete(down);
      sockets.delete(up);
    };
    down.on('error', close).on('close', close);
    up.on('error', close).on('close', close);
    down.pipe(up).pipe(down);
  });
  // A refused handshake is the point of the negative tests, not a terminator failure.
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
