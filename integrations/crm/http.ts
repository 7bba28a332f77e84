/**
 * The HTTP client both CRM adapters use: a timeout per request, no retries (Temporal owns
 * retries), a hook for the per-connection rate governor, and every failure classified once
 * as a CrmError the activities map onto retryable or non-retryable failures.
 */
import type { z } from 'zod';
import { parseRetryAfter } from '../../lib/retry-after.js';
import type { CrmProvider, OAuthApp, TokenGrant } from './types.js';
import { crmRequests } from '../../lib/metrics.js';
import { UnsafeUrlError } from '../../lib/ssrf.js';

export type CrmErrorKind =
  | 'auth' // 401: the token is expired or revoked
  | 'forbidden' // 403: missing scope, or (Kommo) an account blocked for abuse
  | 'not-found'
  | 'validation' // 400/422: our request is wrong; retrying cannot help
  | 'conflict'
  | 'rate-limited' // 429
  | 'unavailable' // 5xx, 423, network errors, timeouts
  | 'invalid-response'; // the provider answered something we cannot parse

const RETRYABLE: ReadonlySet<CrmErrorKind> = new Set(['rate-limited', 'unavailable']);

export class CrmError extends Error {
  readonly retryable: boolean;
  constructor(
    readonly provider: CrmProvider,
    readonly kind: CrmErrorKind,
    message: string,
    readonly details: { status?: number; retryAfterMs?: number } = {},
  ) {
    super(message);
    this.name = 'CrmError';
    this.retryable = RETRYABLE.has(kind);
  }
}

export interface CrmRequestHooks {
  /** Called before every request; the rate governor waits here for a token. */
  beforeRequest?: () => Promise<void>;
  /** Called when the provider pushed back (429), with how long it asked us to wait. */
  onRateLimited?: (retryAfterMs: number) => Promise<void>;
}

export interface CrmHttpOptions extends CrmRequestHooks {
  provider: CrmProvider;
  baseUrl: string;
  timeoutMs: number;
  /** Supplies the bearer token for each request (it may be refreshed between requests). */
  accessToken?: () => Promise<string>;
  fetch?: typeof fetch;
  /** Fallback wait for a 429 that names none (HubSpot's REST 429s carry no Retry-After). */
  defaultRetryAfterMs?: number;
  maxResponseBytes?: number;
}

/** What every adapter is built from: the account's API, a token source, and the request hooks. */
export interface CrmAdapterOptions extends CrmRequestHooks {
  /** Kommo: `https://{subdomain}.kommo.com` (or `.amocrm.ru`), never www. HubSpot: `https://api.hubapi.com`. */
  baseUrl: string;
  accessToken: () => Promise<string>;
  /** Default 30 s. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/** The one HTTP client of an adapter, with the provider's fallback wait for a 429 that names none. */
export function adapterHttpClient(provider: CrmProvider, options: CrmAdapterOptions, defaultRetryAfterMs: number): CrmHttpClient {
  return new CrmHttpClient({
    provider,
    baseUrl: options.baseUrl,
    timeoutMs: options.timeoutMs ?? 30_000,
    accessToken: options.accessToken,
    ...(options.fetch ? { fetch: options.fetch } : {}),
    ...(options.beforeRequest ? { beforeRequest: options.beforeRequest } : {}),
    ...(options.onRateLimited ? { onRateLimited: options.onRateLimited } : {}),
    defaultRetryAfterMs,
  });
}

/** The token request's fields; both providers take the same ones (Kommo as JSON, HubSpot as a form). */
export function oauthGrantFields(app: OAuthApp, grant: TokenGrant): Record<string, string> {
  return {
    grant_type: grant.kind,
    client_id: app.clientId,
    client_secret: app.clientSecret,
    redirect_uri: app.redirectUri,
    ...(grant.kind === 'authorization_code' ? { code: grant.code } : { refresh_token: grant.refreshToken }),
  };
}

/**
 * For a token request's `.catch`: a 400 or 401 from the token endpoint means the grant is gone
 * (used, revoked, or the app uninstalled), so the connection needs re-authorizing.
 */
export function grantRejected(provider: CrmProvider, label: string, grant: TokenGrant): (err: unknown) => never {
  return (err) => {
    if (err instanceof CrmError && (err.kind === 'validation' || err.kind === 'auth')) {
      throw new CrmError(provider, 'auth', `${label} rejected the ${grant.kind} grant: ${err.message}`, err.details);
    }
    throw err;
  };
}

export interface CrmRequest {
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  path: string;
  query?: Record<string, string | number | undefined>;
  json?: unknown;
  form?: Record<string, string>;
  /** Skip the bearer token (OAuth token endpoints). */
  anonymous?: boolean;
}

export interface CrmResponse {
  status: number;
  headers: Headers;
  body: unknown;
}

const MESSAGE_MAX = 300;

export class CrmHttpClient {
  readonly provider: CrmProvider;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly options: CrmHttpOptions) {
    this.provider = options.provider;
    this.fetchImpl = options.fetch ?? fetch;
  }

  /** Sends one request; answers the parsed body of a 2xx (null for 204) or throws a CrmError. */
  async request(req: CrmRequest): Promise<CrmResponse> {
    const url = new URL(req.path, this.options.baseUrl);
    for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (!req.anonymous && this.options.accessToken) headers.authorization = `Bearer ${await this.options.accessToken()}`;
    let body: string | undefined;
    if (req.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(req.json);
    } else if (req.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(req.form).toString();
    }
    await this.options.beforeRequest?.();
    let res: Response;
    try {
      res = await this.fetchImpl(url, {
        method: req.method,
        headers,
        ...(body !== undefined ? { body } : {}),
        redirect: 'manual',
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
    } catch (err) {
      crmRequests.inc({ provider: this.provider, status: 'network' });
      // The SSRF guard refused the address: retrying cannot help, the connection must be fixed.
      const refusal = err instanceof UnsafeUrlError ? err : err instanceof Error && err.cause instanceof UnsafeUrlError ? err.cause : undefined;
      if (refusal) throw new CrmError(this.provider, 'forbidden', `${this.provider} address refused: ${refusal.message}`);
      const timedOut = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
      throw new CrmError(this.provider, 'unavailable', timedOut ? `${this.provider} did not answer within ${this.options.timeoutMs} ms` : `${this.provider} is unreachable: ${(err as Error).message}`);
    }
    crmRequests.inc({ provider: this.provider, status: String(res.status) });
    const text = await readLimited(res, this.options.maxResponseBytes ?? 16 * 1024 * 1024, this.provider);
    let parsed: unknown = null;
    if (text.length > 0) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (res.status >= 200 && res.status < 300) {
      if (typeof parsed === 'string') throw new CrmError(this.provider, 'invalid-response', `${this.provider} answered ${res.status} with a body that is not JSON`);
      return { status: res.status, headers: res.headers, body: parsed };
    }
    throw await this.classify(res, parsed);
  }

  /** request() plus zod validation of the body. */
  async requestParsed<S extends z.ZodType>(req: CrmRequest, schema: S): Promise<z.infer<S>> {
    const res = await this.request(req);
    return this.parse(res.body, schema, `${req.method} ${req.path}`);
  }

  parse<S extends z.ZodType>(body: unknown, schema: S, what: string): z.infer<S> {
    const result = schema.safeParse(body);
    if (!result.success) {
      const issue = result.error.issues[0];
      throw new CrmError(this.provider, 'invalid-response', `${this.provider} answered ${what} with an unexpected body (${issue?.path.join('.') ?? ''}: ${issue?.message ?? ''})`);
    }
    return result.data;
  }

  private async classify(res: Response, body: unknown): Promise<CrmError> {
    const message = providerMessage(body) ?? res.statusText ?? 'no message';
    const text = `${this.provider} answered ${res.status}: ${message}`.slice(0, MESSAGE_MAX);
    const status = res.status;
    if (status === 429) {
      // Kommo documents `retry_after` (seconds) in the body; HubSpot sends neither header nor
      // field on REST 429s, so the default applies (its limits roll over 10 s windows).
      const retryAfterMs =
        parseRetryAfter(res.headers.get('retry-after')) ??
        bodyRetryAfterMs(body) ??
        this.options.defaultRetryAfterMs ??
        1_000;
      await this.options.onRateLimited?.(retryAfterMs);
      return new CrmError(this.provider, 'rate-limited', text, { status, retryAfterMs });
    }
    if (status === 401) return new CrmError(this.provider, 'auth', text, { status });
    if (status === 403) return new CrmError(this.provider, 'forbidden', text, { status });
    if (status === 404) return new CrmError(this.provider, 'not-found', text, { status });
    if (status === 409) return new CrmError(this.provider, 'conflict', text, { status });
    if (status === 423 || status >= 500) {
      const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'));
      return new CrmError(this.provider, 'unavailable', text, { status, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) });
    }
    if (status >= 300 && status < 400) return new CrmError(this.provider, 'invalid-response', `${this.provider} redirected (${status}); check the account's API domain`, { status });
    return new CrmError(this.provider, 'validation', text, { status });
  }
}

function bodyRetryAfterMs(body: unknown): number | undefined {
  if (body && typeof body === 'object' && 'retry_after' in body) {
    const seconds = Number((body as { retry_after: unknown }).retry_after);
    if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  }
  return undefined;
}

function providerMessage(body: unknown): string | undefined {
  // A non-JSON body is an error page (HTML from a proxy or login wall): never echoed to our
  // callers or stored as the connection's last error.
  if (typeof body === 'string') return undefined;
  if (!body || typeof body !== 'object') return undefined;
  const b = body as Record<string, unknown>;
  for (const key of ['detail', 'message', 'error_description', 'title', 'error']) {
    if (typeof b[key] === 'string') return b[key];
  }
  return undefined;
}

async function readLimited(res: Response, limit: number, provider: CrmProvider): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw new CrmError(provider, 'invalid-response', `response larger than ${limit} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
