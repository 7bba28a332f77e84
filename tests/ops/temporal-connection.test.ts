/**
 * The TEMPORAL_* connection variables (lib/config.ts) and the one builder every process uses
 * (lib/temporal.ts): what each combination turns into, and the start-up errors that name the
 * variable at fault. The mutual-TLS round trip itself is tests/stack/secure-temporal.test.ts.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadApiConfig, loadSetupConfig, loadTemporalToolConfig, loadWorkerConfig } from '../../lib/config.js';
import { describeTemporalConnection, temporalConnectionOptions } from '../../lib/temporal.js';

const CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n';
const dir = mkdtempSync(path.join(os.tmpdir(), 'temporal-connection-'));
const certFile = path.join(dir, 'client.crt');
writeFileSync(certFile, CERT);
const notPem = path.join(dir, 'notes.txt');
writeFileSync(notPem, 'hello');

function problems(load: () => unknown): string[] {
  try {
    load();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('Temporal connection settings', () => {
  it('a plain address stays plaintext; an API key alone turns TLS on with the system CAs', () => {
    expect(temporalConnectionOptions(loadTemporalToolConfig({ TEMPORAL_ADDRESS: 'temporal:7233' }))).toEqual({ address: 'temporal:7233' });
    const cloud = loadTemporalToolConfig({ TEMPORAL_ADDRESS: 'us-east-1.aws.api.temporal.io:7233', TEMPORAL_NAMESPACE: 'prod.a1b2c', TEMPORAL_API_KEY: 'key-123' });
    expect(temporalConnectionOptions(cloud)).toEqual({ address: 'us-east-1.aws.api.temporal.io:7233', apiKey: 'key-123', tls: {} });
    expect(describeTemporalConnection(cloud)).toBe('us-east-1.aws.api.temporal.io:7233, namespace prod.a1b2c, TLS, API key');
    // An operator may send a key in clear on purpose (a local proxy that adds TLS).
    expect(temporalConnectionOptions(loadTemporalToolConfig({ TEMPORAL_API_KEY: 'k', TEMPORAL_TLS: 'false' })).tls).toBe(false);
  });

  it('mTLS reads certificates from files or inline PEM and carries the server name', () => {
    const config = loadWorkerConfig({
      DATABASE_URL: 'postgres://authenticator:x@db:5432/app',
      TEMPORAL_ADDRESS: '10.0.0.5:7233',
      TEMPORAL_TLS_CA: CERT,
      TEMPORAL_TLS_CERT: certFile,
      TEMPORAL_TLS_KEY: KEY,
      TEMPORAL_TLS_SERVER_NAME: 'temporal-frontend.internal',
    });
    const options = temporalConnectionOptions(config);
    expect(options.tls && Buffer.from(options.tls.serverRootCACertificate!).toString()).toBe(CERT);
    expect(options.tls && Buffer.from(options.tls.clientCertPair!.crt).toString()).toBe(CERT);
    expect(options.tls && Buffer.from(options.tls.clientCertPair!.key).toString()).toBe(KEY);
    expect(options.tls && options.tls.serverNameOverride).toBe('temporal-frontend.internal');
    expect(describeTemporalConnection(config)).toBe('10.0.0.5:7233, namespace default, mTLS');
    // TEMPORAL_TLS=true alone: TLS with the system's roots and no client certificate.
    expect(temporalConnectionOptions(loadTemporalToolConfig({ TEMPORAL_TLS: 'true' })).tls).toEqual({});
  });

  it('every process refuses to start on a broken TLS setting, naming the variable', () => {
    const base = { DATABASE_URL: 'postgres://authenticator:x@db:5432/app', SUPABASE_JWT_SECRET: 'x'.repeat(32), DATABASE_MIGRATION_URL: 'postgres://postgres:x@db:5432/app' };
    const loaders = [loadApiConfig, loadWorkerConfig, loadSetupConfig, loadTemporalToolConfig];
    for (const load of loaders) {
      expect(problems(() => load({ ...base, TEMPORAL_TLS_CERT: certFile }))).toEqual(['TEMPORAL_TLS_KEY: required with TEMPORAL_TLS_CERT (mutual TLS needs the certificate and its key)']);
      expect(problems(() => load({ ...base, TEMPORAL_TLS_KEY: KEY }))).toEqual(['TEMPORAL_TLS_CERT: required with TEMPORAL_TLS_KEY (mutual TLS needs the certificate and its key)']);
      expect(problems(() => load({ ...base, TEMPORAL_TLS_CA: path.join(dir, 'missing.crt') }))).toEqual([`TEMPORAL_TLS_CA: cannot read ${path.join(dir, 'missing.crt')}: ENOENT`]);
      expect(problems(() => load({ ...base, TEMPORAL_TLS_CA: notPem }))).toEqual(['TEMPORAL_TLS_CA: must be a CA certificate in PEM form (-----BEGIN …) or the path of a file holding it']);
      expect(problems(() => load({ ...base, TEMPORAL_TLS: 'false', TEMPORAL_TLS_SERVER_NAME: 'x' }))).toEqual(['TEMPORAL_TLS: is false but TEMPORAL_TLS_SERVER_NAME is set; remove one or the other']);
      expect(problems(() => load({ ...base, TEMPORAL_TLS: 'yes' }))[0]).toMatch(/^TEMPORAL_TLS: /);
    }
  });

  it('setup names every missing variable at once', () => {
    expect(problems(() => loadSetupConfig({ TEMPORAL_NAMESPACE_RETENTION_DAYS: '0' }))).toEqual([
      expect.stringMatching(/^DATABASE_MIGRATION_URL: /),
      expect.stringMatching(/^TEMPORAL_NAMESPACE_RETENTION_DAYS: /),
    ]);
  });
});
