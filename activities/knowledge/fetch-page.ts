/**
 * Fetching a customer's web page for the knowledge base, through the SSRF guard: the first
 * ingestion and every scheduled re-fetch go through here. Failures become Temporal failures the
 * workflows retry (network trouble, 429, 5xx) or not (unsafe URL, 4xx, too large, wrong type).
 */
import { ApplicationFailure } from '@temporalio/activity';
import type { Response as UndiciResponse } from 'undici';
import { UnsafeUrlError, type GuardedFetch } from '../../lib/ssrf.js';
import { sniffMediaType, type KnowledgeMediaType } from '../../integrations/documents/media-type.js';
import { KnowledgeFailureTypes } from './failure-types.js';

/** What the page said about its version, sent back on the next fetch to ask "changed since?". */
export interface PageValidators {
  etag: string | null;
  lastModified: string | null;
}

export type FetchedPage =
  | { status: 'fetched'; bytes: Uint8Array; mediaType: KnowledgeMediaType; validators: PageValidators }
  /** 304 Not Modified: the page is what it was when `validators` were recorded. */
  | { status: 'not-modified' };

export interface PageFetchOptions {
  fetchUrl: GuardedFetch;
  /** Largest page read (default 5 MB). */
  maxBytes?: number;
  timeoutMs?: number;
}

export function extractionFailure(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, KnowledgeFailureTypes.extraction);
}

async function readLimited(response: UndiciResponse, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(response.headers.get('content-length') ?? '0');
  if (declared > maxBytes) throw extractionFailure(`The page is larger than ${maxBytes} bytes.`);
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const part of response.body as AsyncIterable<Uint8Array>) {
    total += part.byteLength;
    if (total > maxBytes) throw extractionFailure(`The page is larger than ${maxBytes} bytes.`);
    parts.push(part);
  }
  return Buffer.concat(parts);
}

/**
 * GETs `url`; with `since` (the validators of the last fetch) the request is conditional
 * (RFC 9110 §13.1), and a server that honours it answers 304 without the body.
 */
export async function fetchPage(url: string, opts: PageFetchOptions, since?: PageValidators): Promise<FetchedPage> {
  const headers: Record<string, string> = { accept: 'text/html, text/plain, application/pdf;q=0.9, */*;q=0.1' };
  if (since?.etag) headers['if-none-match'] = since.etag;
  if (since?.lastModified) headers['if-modified-since'] = since.lastModified;
  let response;
  try {
    response = await opts.fetchUrl(url, { signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000), headers });
  } catch (err) {
    if (err instanceof UnsafeUrlError) throw ApplicationFailure.nonRetryable(`The URL is not allowed: ${err.message}.`, KnowledgeFailureTypes.source);
    throw err; // network trouble: Temporal retries
  }
  if (response.status === 304 && since) {
    await response.body?.cancel();
    return { status: 'not-modified' };
  }
  if (response.status >= 400 && response.status < 500 && response.status !== 429) {
    await response.body?.cancel();
    throw ApplicationFailure.nonRetryable(`The page answered HTTP ${response.status}.`, KnowledgeFailureTypes.source);
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw ApplicationFailure.retryable(`The page answered HTTP ${response.status}.`, 'KnowledgeSourceBusy');
  }
  const bytes = await readLimited(response, opts.maxBytes ?? 5 * 1024 * 1024);
  const mediaType = sniffMediaType(bytes);
  if (!mediaType || mediaType === 'application/vnd.openxmlformats-officedocument.wordprocessingml.document') {
    throw extractionFailure(`The page is ${response.headers.get('content-type') ?? 'of an unknown type'}, not HTML, text or PDF.`);
  }
  const validators = {
    etag: response.headers.get('etag')?.slice(0, 500) ?? null,
    lastModified: response.headers.get('last-modified')?.slice(0, 100) ?? null,
  };
  return { status: 'fetched', bytes, mediaType, validators };
}
