/**
 * What a process does when something throws that nothing catches: an uncaught exception or an
 * unhandled promise rejection leaves the process in a state nobody reasoned about, so it is
 * logged (fatal), reported to Sentry when it is on, flushed, and the process exits 1 for the
 * orchestrator to restart it. Explicit handlers rather than Sentry's default integrations: those
 * also instrument http and pg (URLs, queries, headers), which lib/sentry.ts keeps off on purpose,
 * and these handlers must work the same whether Sentry is on or not.
 */
import type { Logger } from './logger.js';
import { flushSentry, reportCrash } from './sentry.js';

let installed = false;

export function exitOnCrash(logger: Logger, flushTimeoutMs = 2_000): void {
  if (installed) return;
  installed = true;
  let crashing = false;
  const crash = (kind: 'uncaughtException' | 'unhandledRejection') => (error: unknown) => {
    // A second failure while the first is being flushed changes nothing: we are already leaving.
    if (crashing) return;
    crashing = true;
    logger.fatal({ err: error, kind }, `${kind}: exiting`);
    reportCrash(error, kind);
    void flushSentry(flushTimeoutMs).finally(() => process.exit(1));
  };
  process.on('uncaughtException', crash('uncaughtException'));
  process.on('unhandledRejection', crash('unhandledRejection'));
}
