/**
 * What the Kommo and HubSpot fakes share: an in-memory record store with modification times
 * and tombstones, OAuth token bookkeeping (expiring access tokens, rotating single-use refresh
 * tokens), a sliding-window rate limiter, one-shot failure injection and request recording.
 * The wire formats live in kommo-server.ts and hubspot-server.ts.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeRecord {
  id: number;
  /** Provider-shaped fields (Kommo entity fields, or HubSpot string properties). */
  fields: Record<string, unknown>;
  createdAtMs: number;
  updatedAtMs: number;
  deletedAtMs: number | null;
}

export class FakeStore {
  private readonly tables = new Map<string, Map<number, FakeRecord>>();
  private nextId = 50_000_000;

  table(type: string): Map<number, FakeRecord> {
    let t = this.tables.get(type);
    if (!t) this.tables.set(type, (t = new Map()));
    return t;
  }

  insert(type: string, fields: Record<string, unknown>, opts: { id?: number; atMs?: number } = {}): FakeRecord {
    const id = opts.id ?? this.nextId++;
    const at = opts.atMs ?? Date.now();
    const record: FakeRecord = { id, fields, createdAtMs: at, updatedAtMs: at, deletedAtMs: null };
    this.table(type).set(id, record);
    this.liveByIdCache.delete(type);
    return record;
  }

  live(type: string): FakeRecord[] {
    return [...this.table(type).values()].filter((r) => r.deletedAtMs === null);
  }

  /**
   * Live records in id order, cached until a record is added or removed: listing pages of a
   * 100k-record account must not copy and sort the whole table per request, or the "zero
   * latency" fake becomes the benchmark's bottleneck. Read-only; copy before sorting otherwise.
   */
  liveById(type: string): readonly FakeRecord[] {
    let cached = this.liveByIdCache.get(type);
    if (!cached) this.liveByIdCache.set(type, (cached = this.live(type).sort((a, b) => a.id - b.id)));
    return cached;
  }
  private readonly liveByIdCache = new Map<string, FakeRecord[]>();

  deleted(type: string): FakeRecord[] {
    return [...this.table(type).values()].filter((r) => r.deletedAtMs !== null);
  }

  get(type: string, id: number): FakeRecord | undefined {
    const r = this.table(type).get(id);
    return r && r.deletedAtMs === null ? r : undefined;
  }

  update(type: string, id: number, fields: Record<string, unknown>, atMs = Date.now()): FakeRecord {
    const r = this.get(type, id);
    if (!r) throw new Error(`no live ${type} ${id}`);
    Object.assign(r.fields, fields);
    // Modification times only move forward, even when the clock granularity is coarse.
    r.updatedAtMs = Math.max(atMs, r.updatedAtMs + 1);
    return r;
  }

  remove(type: string, id: number, atMs = Date.now()): void {
    const r = this.get(type, id);
    if (!r) throw new Error(`no live ${type} ${id}`);
    r.deletedAtMs = atMs;
    r.updatedAtMs = Math.max(atMs, r.updatedAtMs + 1);
    this.liveByIdCache.delete(type);
  }
}

export interface TokenOptions {
  accessTokenTtlSec: number;
  /** Refresh tokens rotate on every refresh and the old one dies (Kommo's stricter reading). */
  rotateRefreshTokens: boolean;
}

export class FakeTokens {
  private readonly access = new Map<string, number>(); // token → expires at (ms); Infinity for static tokens
  private readonly refresh = new Map<string, 'live' | 'used'>();
  private readonly codes = new Set<string>();
  refreshCount = 0;

  constructor(public options: TokenOptions) {}

  issueCode(): string {
    const code = `code-${randomBytes(12).toString('hex')}`;
    this.codes.add(code);
    return code;
  }

  addStaticToken(token: string): void {
    this.access.set(token, Infinity);
  }

  private issue(): { accessToken: string; refreshToken: string; expiresIn: number } {
    const accessToken = `at-${randomBytes(16).toString('hex')}`;
    const refreshToken = `rt-${randomBytes(16).toString('hex')}`;
    this.access.set(accessToken, Date.now() + this.options.accessTokenTtlSec * 1000);
    this.refresh.set(refreshToken, 'live');
    return { accessToken, refreshToken, expiresIn: this.options.accessTokenTtlSec };
  }

  /** Exchanges a code (single use). */
  exchange(code: string): { accessToken: string; refreshToken: string; expiresIn: number } | null {
    if (!this.codes.delete(code)) return null;
    return this.issue();
  }

  refreshWith(refreshToken: string): { accessToken: string; refreshToken: string; expiresIn: number } | null {
    if (this.refresh.get(refreshToken) !== 'live') return null;
    this.refreshCount++;
    if (!this.options.rotateRefreshTokens) {
      const issued = this.issue();
      this.refresh.delete(issued.refreshToken);
      return { ...issued, refreshToken };
    }
    this.refresh.set(refreshToken, 'used');
    return this.issue();
  }

  /** 'ok', 'expired' or 'unknown'. */
  check(token: string | undefined): 'ok' | 'expired' | 'unknown' {
    if (!token) return 'unknown';
    const exp = this.access.get(token);
    if (exp === undefined) return 'unknown';
    return exp > Date.now() ? 'ok' : 'expired';
  }

  expireAllAccessTokens(): void {
    for (const [token, exp] of this.access) if (exp !== Infinity) this.access.set(token, Date.now() - 1);
  }

  revokeAll(): void {
    this.access.clear();
    this.refresh.clear();
  }
}

export class SlidingWindow {
  private readonly hits: number[] = [];
  constructor(public max: number, public windowMs: number) {}
  /** Records a hit; false when it is over the limit (the hit is not counted). */
  take(now = Date.now()): boolean {
    while (this.hits.length > 0 && this.hits[0]! <= now - this.windowMs) this.hits.shift();
    if (this.hits.length >= this.max) return false;
    this.hits.push(now);
    return true;
  }
  remaining(now = Date.now()): number {
    while (this.hits.length > 0 && this.hits[0]! <= now - this.windowMs) this.hits.shift();
    return Math.max(0, this.max - this.hits.length);
  }
  msUntilFree(now = Date.now()): number {
    return this.hits.length < this.max ? 0 : Math.max(0, this.hits[0]! + this.windowMs - now);
  }
}

export interface RecordedCrmRequest {
  at: number;
  method: string;
  path: string;
  query: URLSearchParams;
  authorization: string | undefined;
  body: string;
  status: number;
}

export interface InjectedFailure {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** Only requests whose path matches; all API requests when absent. */
  pathPattern?: RegExp;
  /** How many matching requests fail; default 1. */
  times?: number;
  /** Hold the response this long first (timeouts). */
  delayMs?: number;
}

export interface FakeContext {
  req: IncomingMessage;
  url: URL;
  body: string;
  send(status: number, body?: unknown, headers?: Record<string, string>): void;
}

export type FakeHandler = (ctx: FakeContext) => Promise<void> | void;

export interface FakeHttp {
  url: string;
  port: number;
  requests: RecordedCrmRequest[];
  failures: InjectedFailure[];
  close(): Promise<void>;
}

/** A loopback server that records every request and applies injected failures first. */
export async function startFakeHttp(handler: FakeHandler, opts: { isApiPath: (path: string) => boolean; latencyMs?: () => number; port?: number }): Promise<FakeHttp> {
  const requests: RecordedCrmRequest[] = [];
  const failures: InjectedFailure[] = [];
  const server: Server = createServer((req, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const recorded: RecordedCrmRequest = {
        at: Date.now(),
        method: req.method ?? 'GET',
        path: url.pathname,
        query: url.searchParams,
        authorization: req.headers.authorization,
        body,
        status: 0,
      };
      requests.push(recorded);
      const send = (status: number, payload?: unknown, headers: Record<string, string> = {}) => {
        recorded.status = status;
        if (res.headersSent) return;
        const isString = typeof payload === 'string';
        res.writeHead(status, {
          ...(payload === undefined ? {} : { 'content-type': isString ? 'text/html' : 'application/json' }),
          ...headers,
        });
        res.end(payload === undefined ? undefined : isString ? payload : JSON.stringify(payload));
      };
      const run = async () => {
        const latency = opts.latencyMs?.() ?? 0;
        if (latency > 0) await new Promise((r) => setTimeout(r, latency));
        if (opts.isApiPath(url.pathname)) {
          const i = failures.findIndex((f) => !f.pathPattern || f.pathPattern.test(url.pathname));
          if (i >= 0) {
            const failure = failures[i]!;
            failure.times = (failure.times ?? 1) - 1;
            if (failure.times <= 0) failures.splice(i, 1);
            if (failure.delayMs) await new Promise((r) => setTimeout(r, failure.delayMs));
            return send(failure.status, failure.body, failure.headers);
          }
        }
        await handler({ req, url, body, send });
      };
      run().catch((err: unknown) => send(500, { message: `fake crashed: ${String(err)}` }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', resolve);
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    failures,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A small deterministic PRNG (mulberry32), so datasets are the same on every run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function bearer(header: string | undefined): string | undefined {
  const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  return m?.[1];
}

export function parseBody(body: string, contentType: string | undefined): Record<string, unknown> {
  if (!body) return {};
  if (contentType?.includes('application/x-www-form-urlencoded')) return Object.fromEntries(new URLSearchParams(body));
  try {
    const parsed = JSON.parse(body) as unknown;
    return parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
