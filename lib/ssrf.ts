import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { Agent, Headers as UndiciHeaders, fetch as undiciFetch, type RequestInit as UndiciRequestInit, type Response as UndiciResponse } from 'undici';

/**
 * Guards every URL a customer can make us call (CRM base URLs, callback and webhook targets)
 * against server-side request forgery. Two checks, both needed:
 * - at save time, `assertPublicUrl` rejects URLs whose host is, or resolves to, an internal
 *   address, so the customer gets a clear 400 instead of a silent failure later;
 * - at fetch time, `guardedFetch` resolves again and checks the address it actually connects
 *   to (inside the connection's DNS lookup, so a rebinding answer cannot slip in between), and
 *   re-checks every redirect hop.
 * IP literals in decimal, octal or hex (`http://2130706433/`, `http://0177.0.0.1/`) are
 * normalised by the WHATWG URL parser before any check, so they meet the same ranges.
 */

export class UnsafeUrlError extends Error {
  constructor(
    message: string,
    readonly url: string,
  ) {
    super(message);
    this.name = 'UnsafeUrlError';
  }
}

const blocked = new BlockList();
// IPv4: "this network", private, CGNAT, loopback, link-local (incl. cloud metadata
// 169.254.169.254), IETF protocol assignments, documentation ranges, benchmarking,
// multicast and reserved/broadcast.
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  blocked.addSubnet(network, prefix, 'ipv4');
}
// IPv6: unspecified, loopback, NAT64/translation prefixes (can reach IPv4 internals),
// discard, documentation, unique-local, link-local, site-local, multicast.
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b::', 96],
  ['64:ff9b:1::', 48],
  ['100::', 64],
  ['2001:db8::', 32],
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
  ['ff00::', 8],
] as const) {
  blocked.addSubnet(network, prefix, 'ipv6');
}

export interface SsrfPolicy {
  /**
   * Hosts (exact names or IP literals, optionally `host:port`) that may be internal anyway.
   * For development and tests only (fake CRMs on loopback); empty in production.
   */
  allowedHosts?: readonly string[];
}

function embeddedIpv4(address: string): string | undefined {
  // IPv4-mapped (::ffff:a.b.c.d or ::ffff:xxxx:xxxx) and IPv4-compatible (::a.b.c.d) forms.
  const lower = address.toLowerCase();
  const dotted = /^::(?:ffff:(?:0:)?)?(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (dotted) return dotted[1];
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (hex) {
    const hi = parseInt(hex[1]!, 16);
    const lo = parseInt(hex[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return undefined;
}

/** True when `address` (an IP literal) is loopback, private, link-local, metadata or otherwise not public. */
export function isInternalAddress(address: string): boolean {
  const bare = address.replace(/^\[|\]$/g, '').split('%')[0]!;
  const family = isIP(bare);
  if (family === 4) return blocked.check(bare, 'ipv4');
  if (family === 6) {
    const v4 = embeddedIpv4(bare);
    if (v4) return blocked.check(v4, 'ipv4');
    return blocked.check(bare, 'ipv6');
  }
  return true; // not an IP at all: refuse rather than guess
}

function isAllowed(url: URL, policy: SsrfPolicy): boolean {
  const allowed = policy.allowedHosts ?? [];
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return allowed.some((entry) => {
    const e = entry.toLowerCase();
    return e === host || e === `${host}:${url.port}` || e === url.host.toLowerCase();
  });
}

function parseHttpUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UnsafeUrlError('is not a valid URL', raw);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new UnsafeUrlError(`must use http or https, not ${url.protocol.replace(':', '')}`, raw);
  }
  if (url.username || url.password) {
    throw new UnsafeUrlError('must not contain credentials', raw);
  }
  return url;
}

function resolveAll(hostname: string): Promise<LookupAddress[]> {
  return new Promise((resolve, reject) => {
    dnsLookup(hostname, { all: true, verbatim: true }, (err, addresses) => (err ? reject(err) : resolve(addresses)));
  });
}

/**
 * Validates a customer-supplied URL at save time: http(s) only, no credentials, and every
 * address its host resolves to must be public (unless the host is allowlisted).
 */
export async function assertPublicUrl(raw: string, policy: SsrfPolicy = {}): Promise<URL> {
  const url = parseHttpUrl(raw);
  if (isAllowed(url, policy)) return url;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host)) {
    if (isInternalAddress(host)) throw new UnsafeUrlError('points to an internal network address', raw);
    return url;
  }
  let addresses: LookupAddress[];
  try {
    addresses = await resolveAll(host);
  } catch {
    throw new UnsafeUrlError(`host ${host} does not resolve`, raw);
  }
  if (addresses.length === 0 || addresses.some((a) => isInternalAddress(a.address))) {
    throw new UnsafeUrlError('resolves to an internal network address', raw);
  }
  return url;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** A connection-time DNS lookup that refuses internal answers, so the checked address is the one we connect to. */
function guardedLookup(policy: SsrfPolicy) {
  return (hostname: string, options: { all?: boolean }, callback: LookupCallback) => {
    dnsLookup(hostname, { all: true, verbatim: true }, (err, addresses) => {
      if (err) return callback(err, []);
      const allowed = (policy.allowedHosts ?? []).map((h) => h.toLowerCase().replace(/:\d+$/, ''));
      if (!allowed.includes(hostname.toLowerCase()) && addresses.some((a) => isInternalAddress(a.address))) {
        const refusal: NodeJS.ErrnoException = new UnsafeUrlError(`${hostname} resolves to an internal network address`, hostname);
        refusal.code = 'ESSRF';
        return callback(refusal, []);
      }
      if (options.all) return callback(null, addresses);
      const first = addresses[0]!;
      return callback(null, first.address, first.family);
    });
  };
}

const MAX_REDIRECTS = 5;

export interface GuardedFetch {
  (url: string, init?: UndiciRequestInit): Promise<UndiciResponse>;
  close(): Promise<void>;
}

const CREDENTIAL_HEADERS = ['authorization', 'proxy-authorization', 'cookie'];

function withoutCredentials(init: UndiciRequestInit): UndiciRequestInit {
  const headers = new UndiciHeaders(init.headers);
  for (const name of CREDENTIAL_HEADERS) headers.delete(name);
  return { ...init, headers };
}

/**
 * A fetch for customer-supplied URLs. Every hop (the first request and each redirect) is
 * checked with `assertPublicUrl`, and the connection itself only reaches public addresses.
 */
export function createGuardedFetch(policy: SsrfPolicy = {}): GuardedFetch {
  const agent = new Agent({ connect: { lookup: guardedLookup(policy) } });
  const guarded = async (raw: string, init: UndiciRequestInit = {}): Promise<UndiciResponse> => {
    let current = raw;
    let hopInit = init;
    let origin: string | undefined;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const url = await assertPublicUrl(current, policy);
      origin ??= new URL(url).origin;
      const response = await undiciFetch(url, { ...hopInit, redirect: 'manual', dispatcher: agent });
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location) {
        await response.body?.cancel();
        const next = new URL(location, url);
        // A token meant for one host never follows a redirect to another origin, nor over plain
        // http where anyone on the path reads it; once dropped it stays dropped.
        if (next.origin !== origin || next.protocol !== 'https:') hopInit = withoutCredentials(hopInit);
        current = next.toString();
        continue;
      }
      return response;
    }
    throw new UnsafeUrlError(`more than ${MAX_REDIRECTS} redirects`, raw);
  };
  return Object.assign(guarded, { close: () => agent.close() });
}
