/**
 * What every worker gets for observability, whatever its task queue: spread
 * `...workerObservability()` into Worker.create options (and pass `workflowInterceptorModules`
 * to bundleWorkflowCode when prebuilding a bundle).
 *
 * - Activity log lines (`Context.current().log`) carry the run's ids (orgId, agentRunId or
 *   connectionId) next to the SDK's workflowId/activityType, so one filter finds a run's logs.
 * - Activity failures go to Sentry (when on) with the activity and workflow as tags. Retryable
 *   failures are reported from the third attempt on, so a single 429 is not an incident.
 * - Workflow failures arrive through the `errorReporting` sink from workflows/interceptors.ts.
 */
import { fileURLToPath } from 'node:url';
import { ApplicationFailure, CancelledFailure, type Context } from '@temporalio/activity';
import type { ActivityInterceptors, InjectedSinks, WorkerOptions } from '@temporalio/worker';
import { reportError } from '../lib/sentry.js';
import { idsOf, type ErrorReportingSinks } from '../workflows/interceptors.js';

export const workflowInterceptorModules = [fileURLToPath(new URL('../workflows/interceptors.ts', import.meta.url))];

const REPORT_RETRYABLE_FROM_ATTEMPT = 3;

function shouldReport(err: unknown, attempt: number): boolean {
  if (err instanceof CancelledFailure || (err instanceof Error && err.name === 'AbortError')) return false;
  const nonRetryable = err instanceof ApplicationFailure && err.nonRetryable;
  return nonRetryable || attempt >= REPORT_RETRYABLE_FROM_ATTEMPT;
}

function activityInterceptors(ctx: Context): ActivityInterceptors {
  let ids: Record<string, string> = {};
  return {
    inbound: {
      async execute(input, next) {
        ids = idsOf(input.args);
        try {
          return await next(input);
        } catch (err) {
          const info = ctx.info;
          if (shouldReport(err, info.attempt)) {
            reportError(err, {
              tags: {
                'temporal.kind': 'activity',
                'temporal.activity_type': info.activityType,
                'temporal.workflow_type': info.workflowType ?? 'none',
                'temporal.task_queue': info.taskQueue,
                ...(err instanceof ApplicationFailure && err.type ? { 'failure.type': err.type } : {}),
              },
              extra: { workflowId: info.workflowExecution?.workflowId, attempt: info.attempt, ...ids },
              fingerprint: ['activity', info.activityType, err instanceof ApplicationFailure ? (err.type ?? 'ApplicationFailure') : (err as Error).name],
            });
          }
          throw err;
        }
      },
    },
    outbound: {
      getLogAttributes(input, next) {
        return next({ ...ids, ...input });
      },
    },
  };
}

const sinks: InjectedSinks<ErrorReportingSinks> = {
  errorReporting: {
    workflowFailed: {
      fn(info, report) {
        const error = new Error(report.message);
        error.name = report.type;
        reportError(error, {
          tags: { 'temporal.kind': 'workflow', 'temporal.workflow_type': info.workflowType, 'temporal.task_queue': info.taskQueue, 'failure.type': report.type },
          extra: { workflowId: info.workflowId, ...report.ids },
          fingerprint: ['workflow', info.workflowType, report.type],
        });
      },
      callDuringReplay: false,
    },
  },
};

export function workerObservability(): Pick<WorkerOptions, 'interceptors' | 'sinks'> {
  return {
    interceptors: { activity: [activityInterceptors], workflowModules: workflowInterceptorModules },
    sinks,
  };
}
