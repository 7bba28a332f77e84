/**
 * Preloaded (`--import`) into a production entry point by tests: on SIGUSR2 the process fails
 * the way a bug makes it fail, chosen by CRASH_TRIGGER, so a test can watch what the real
 * process does about it (lib/crash.ts) without any test hook in production code.
 *
 * - `uncaught`: an exception thrown from a callback nothing catches;
 * - `rejection`: a promise rejected with nobody listening;
 * - `report`: an error reported to Sentry as a request would, just before the test stops the process.
 */
import * as Sentry from '@sentry/node';

const mode = process.env.CRASH_TRIGGER;

process.on('SIGUSR2', () => {
  if (mode === 'uncaught') {
    setImmediate(() => {
      throw new Error('crash canary: uncaught exception');
    });
  } else if (mode === 'rejection') {
    void Promise.reject(new Error('crash canary: unhandled rejection'));
  } else if (mode === 'report') {
    Sentry.captureException(new Error('reported just before shutdown'));
  }
});
