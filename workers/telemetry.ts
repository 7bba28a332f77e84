import { DefaultLogger, type LogLevel, type RuntimeOptions } from '@temporalio/worker';
import type { Logger } from '../lib/logger.js';
import { scrubString, scrubValue } from '../lib/scrub.js';

/**
 * The Temporal SDK's worker metrics (poll latency, task slots, schedule-to-start latency,
 * workflow and activity outcomes), exported by the Rust core on its own Prometheus listener.
 * Names follow Prometheus conventions so the alert rules read naturally: counters end in
 * `_total`, durations are `_seconds` histograms, e.g. `temporal_activity_execution_failed_total`,
 * `temporal_workflow_task_schedule_to_start_latency_seconds_bucket`.
 */
export function workerTelemetryOptions(metricsBindAddress: string | undefined): RuntimeOptions['telemetryOptions'] {
  if (!metricsBindAddress) return {};
  return {
    metrics: {
      // Every series carries the service label, so API and worker panels can be told apart.
      globalTags: { service: 'worker' },
      prometheus: {
        bindAddress: metricsBindAddress,
        countersTotalSuffix: true,
        unitSuffix: true,
        useSecondsForDurations: true,
      },
    },
  };
}

const pinoLevels: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
};

/**
 * The SDK's logs (worker, workflow and activity context, failures with their messages) through
 * pino: the JSON format and path redaction apply, and secrets quoted inside messages and error
 * texts are masked (lib/scrub.ts).
 */
export function runtimeLogger(logger: Logger, level: LogLevel = 'INFO'): DefaultLogger {
  return new DefaultLogger(level, (entry) => {
    logger[pinoLevels[entry.level]](scrubValue({ ...entry.meta }), scrubString(entry.message));
  });
}
