import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertPublicUrl, createGuardedFetch, isInternalAddress, UnsafeUrlError } from '../../lib/ssrf.js';

describe('SSRF guard', () => {
  const internalTargets = [
    'http://127.0.0.1/',
    'http://127.1.2.3:8080/admin',
    'http://localhost:5432/',
    'http://0.0.0.0/',
    'http://10.0.0.7/',
    'http://172.16.5.4/',
    'http://192.168.1.1/',
    'http://100.64.0.1/',
    'http://169.254.169.254/latest/meta-data/iam/security-credentials/',
    'http://[::1]/',
    'http://[::]/',
    'http://[::ffff:127.0.0.1]/',
    'http://[::ffff:7f00:1]/',
    'http://[::ffff:169.254.169.254]/',
    'http://[fd00::1]/',
    'http://[fe80::1]/',
    'http://[64:ff9b::a9fe:a9fe]/',
    'http://2130706433/', // decimal 127.0.0.1
    'http://0177.0.0.1/', // octal
    'http://0x7f.0.0.1/', // hex
    'http://017700000001/', // octal, one number
    'http://2852039166/', // decimal 169.254.169.254
  ];

  it.each(internalTargets)('refuses %s at save time', async (url) => {
    await expect(assertPublicUrl(url)).rejects.toBeInstanceOf(UnsafeUrlError);
  });

  it.each(['file:///etc/passwd', 'gopher://example.com/', 'ftp://example.com/', 'javascript:alert(1)', 'not a url'])('refuses %s (scheme or syntax)', async (url) => {
    await expect(assertPublicUrl(url)).rejects.toBeInstanceOf(UnsafeUrlError);
  });

  it('refuses credentials embedded in the URL', async () => {
    await expect(assertPublicUrl('https://user:secret@93.184.216.34/')).rejects.toThrow(/credentials/);
  });

  it('accepts a public address without connecting to it', async () => {
    await expect(assertPublicUrl('https://93.184.216.34/api/v4')).resolves.toBeInstanceOf(URL);
    expect(isInternalAddress('8.8.8.8')).toBe(false);
    expect(isInternalAddress('2606:4700:4700::1111')).toBe(false);
  });

  describe('at fetch time', () => {
    let canary: Server;
    let canaryHits = 0;
    let redirector: Server;
    let redirectorPort: number;
    let canaryPort: number;

    const listen = (server: Server) =>
      new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));

    beforeAll(async () => {
      canary = createServer((_req, res) => {
        canaryHits++;
        res.end('internal secret');
      });
      canaryPort = await listen(canary);
      redirector = createServer((req, res) => {
        const target = req.url === '/to-metadata' ? 'http://169.254.169.254/latest/meta-data/' : `http://127.0.0.1:${canaryPort}/`;
        if (req.url === '/ok') return res.end('fine');
        res.writeHead(302, { location: target }).end();
      });
      redirectorPort = await listen(redirector);
    });

    afterAll(async () => {
      await new Promise((r) => canary.close(r));
      await new Promise((r) => redirector.close(r));
    });

    it('fetches an allowlisted development host', async () => {
      const fetchGuarded = createGuardedFetch({ allowedHosts: [`127.0.0.1:${redirectorPort}`] });
      const res = await fetchGuarded(`http://127.0.0.1:${redirectorPort}/ok`);
      expect(await res.text()).toBe('fine');
      await fetchGuarded.close();
    });

    it('re-checks redirects: a hop to an internal address is refused and never connected to', async () => {
      const fetchGuarded = createGuardedFetch({ allowedHosts: [`127.0.0.1:${redirectorPort}`] });
      await expect(fetchGuarded(`http://127.0.0.1:${redirectorPort}/to-canary`)).rejects.toBeInstanceOf(UnsafeUrlError);
      await expect(fetchGuarded(`http://127.0.0.1:${redirectorPort}/to-metadata`)).rejects.toBeInstanceOf(UnsafeUrlError);
      expect(canaryHits).toBe(0);
      await fetchGuarded.close();
    });

    it('never forwards credentials across a redirect to another origin or over plain http', async () => {
      const seen: Array<{ url: string | undefined; headers: Record<string, unknown> }> = [];
      const target = createServer((req, res) => {
        seen.push({ url: req.url, headers: { ...req.headers } });
        res.end('landed');
      });
      const targetPort = await listen(target);
      const hopper = createServer((req, res) => {
        seen.push({ url: req.url, headers: { ...req.headers } });
        if (req.url === '/elsewhere') return res.writeHead(302, { location: `http://127.0.0.1:${targetPort}/landing` }).end();
        if (req.url === '/same-origin') return res.writeHead(302, { location: '/final' }).end();
        res.end('final');
      });
      const hopperPort = await listen(hopper);
      const fetchGuarded = createGuardedFetch({ allowedHosts: [`127.0.0.1:${hopperPort}`, `127.0.0.1:${targetPort}`] });
      const headers = { authorization: 'Bearer crm-token', cookie: 'session=1', 'x-request-id': 'r-1' };
      try {
        expect(await (await fetchGuarded(`http://127.0.0.1:${hopperPort}/elsewhere`, { headers })).text()).toBe('landed');
        expect(await (await fetchGuarded(`http://127.0.0.1:${hopperPort}/same-origin`, { headers })).text()).toBe('final');
      } finally {
        await fetchGuarded.close();
        await new Promise((r) => target.close(r));
        await new Promise((r) => hopper.close(r));
      }
      // The first hop carries what the caller sent; no later hop carries a credential.
      expect(seen.map((s) => s.url)).toEqual(['/elsewhere', '/landing', '/same-origin', '/final']);
      for (const first of [seen[0]!, seen[2]!]) expect(first.headers).toMatchObject({ authorization: 'Bearer crm-token', cookie: 'session=1' });
      for (const hop of [seen[1]!, seen[3]!]) {
        expect(hop.headers.authorization).toBeUndefined();
        expect(hop.headers.cookie).toBeUndefined();
        expect(hop.headers['x-request-id']).toBe('r-1');
      }
    });

    it('refuses an internal target outright without an allowlist', async () => {
      const fetchGuarded = createGuardedFetch();
      await expect(fetchGuarded(`http://127.0.0.1:${canaryPort}/`)).rejects.toBeInstanceOf(UnsafeUrlError);
      await expect(fetchGuarded(`http://localhost:${canaryPort}/`)).rejects.toBeInstanceOf(UnsafeUrlError);
      expect(canaryHits).toBe(0);
      await fetchGuarded.close();
    });
  });
});
