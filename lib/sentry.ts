/**
 * Error reporting to Sentry, on only when SENTRY_DSN is set. The API reports unexpected (5xx)
 * errors, workers report activity failures (activity interceptor) and workflow failures (a sink
 * the workflow interceptor calls; Sentry itself never enters workflow code).
 *
 * Scrubbing happens in `beforeSend`/`beforeBreadcrumb`, so nothing leaves the process without
 * passing it: request headers, bodies, cookies and query strings are dropped; values under
 * secret-looking keys are replaced; and secret-looking substrings (bearer tokens, JWTs, provider
 * API keys, `password=…`) are masked in every string, exception messages included.
 */
import * as Sentry from '@sentry/node';
import { scrubString, scrubValue } from './scrub.js';

export { scrubString, scrubValue };

export function scrubEvent<E extends Sentry.ErrorEvent>(event: E): E {
  if (event.request) {
    // Only where the request went: no headers, body, cookies or query string.
    event.request = {
      ...(event.request.method ? { method: event.request.method } : {}),
      ...(event.request.url ? { url: event.request.url.split('?')[0] } : {}),
    };
  }
  delete event.user;
  return scrubValue(event);
}

export interface SentrySettings {
  SENTRY_DSN?: string | undefined;
  SENTRY_ENVIRONMENT?: string | undefined;
  SENTRY_RELEASE?: string | undefined;
  APP_ENV?: string | undefined;
}

let enabled = false;

/** Starts Sentry when SENTRY_DSN is set; answers whether it is on. Call once, first thing. */
export function initSentry(settings: SentrySettings, service: 'api' | 'worker'): boolean {
  if (!settings.SENTRY_DSN) return false;
  Sentry.init({
    dsn: settings.SENTRY_DSN,
    environment: settings.SENTRY_ENVIRONMENT ?? settings.APP_ENV ?? 'development',
    ...(settings.SENTRY_RELEASE ? { release: settings.SENTRY_RELEASE } : {}),
    // Errors only: no tracing, no automatic instrumentation of http/pg (which would record
    // URLs, queries and headers); PII is off by default in this SDK major. Uncaught exceptions
    // and unhandled rejections are reported by lib/crash.ts, which every process installs.
    defaultIntegrations: false,
    integrations: [],
    initialScope: { tags: { service } },
    beforeSend: (event) => scrubEvent(event),
    beforeBreadcrumb: (breadcrumb) => scrubValue(breadcrumb),
  });
  enabled = true;
  return true;
}

export function sentryEnabled(): boolean {
  return enabled;
}

/** Reports an error with tags and (scrubbed) context; a no-op when Sentry is off. */
export function reportError(error: unknown, context: { tags?: Record<string, string>; extra?: Record<string, unknown>; fingerprint?: string[] } = {}): void {
  if (!enabled) return;
  Sentry.withScope((scope) => {
    if (context.tags) scope.setTags(context.tags);
    if (context.extra) scope.setExtras(context.extra);
    if (context.fingerprint) scope.setFingerprint(context.fingerprint);
    Sentry.captureException(error);
  });
}

/** Reports what is about to end the process (lib/crash.ts): level fatal, marked unhandled. */
export function reportCrash(error: unknown, kind: 'uncaughtException' | 'unhandledRejection'): void {
  if (!enabled) return;
  Sentry.withScope((scope) => {
    scope.setLevel('fatal');
    scope.setTag('crash', kind);
    Sentry.captureException(error, { mechanism: { handled: false, type: `auto.node.${kind.toLowerCase()}` } });
  });
}

export async function flushSentry(timeoutMs = 2_000): Promise<void> {
  if (enabled) await Sentry.flush(timeoutMs);
}
