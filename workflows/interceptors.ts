/**
 * Workflow interceptors, bundled into every worker's workflow code (workers/observability.ts
 * passes this module as `interceptors.workflowModules`). Deterministic and I/O-free: failures go
 * out through the `errorReporting` sink, which the worker implements with Sentry
 * (`callDuringReplay: false`, so a replay never reports twice); log lines get the run's ids.
 *
 * Adding or removing this module does not change the commands a workflow issues, so histories
 * recorded with or without it replay identically.
 */
import {
  ContinueAsNew,
  isCancellation,
  proxySinks,
  type Sinks,
  type WorkflowInboundCallsInterceptor,
  type WorkflowInterceptors,
  type WorkflowOutboundCallsInterceptor,
} from '@temporalio/workflow';

export interface WorkflowFailureReport {
  /** The error's class or ApplicationFailure type, e.g. `LlmRequestRejected`. */
  type: string;
  message: string;
  /** Ids from the workflow's input (orgId, agentRunId, connectionId…), never tenant text. */
  ids: Record<string, string>;
}

export interface ErrorReportingSinks extends Sinks {
  errorReporting: {
    workflowFailed(report: WorkflowFailureReport): void;
  };
}

// Input field → log/report attribute. Our run id is logged as `agentRunId` because `runId`
// already means the Temporal run id in the SDK's workflow log attributes.
const ID_KEYS = { orgId: 'orgId', runId: 'agentRunId', agentId: 'agentId', connectionId: 'connectionId', syncRunId: 'syncRunId' } as const;

/** The ids a workflow or activity input carries, for log lines and error reports. */
export function idsOf(args: readonly unknown[]): Record<string, string> {
  const first = args[0];
  if (!first || typeof first !== 'object') return {};
  const ids: Record<string, string> = {};
  for (const [key, attribute] of Object.entries(ID_KEYS)) {
    const value = (first as Record<string, unknown>)[key];
    if (typeof value === 'string') ids[attribute] = value;
  }
  return ids;
}

export const interceptors = (): WorkflowInterceptors => {
  const { errorReporting } = proxySinks<ErrorReportingSinks>();
  let ids: Record<string, string> = {};
  const inbound: WorkflowInboundCallsInterceptor = {
    async execute(input, next) {
      ids = idsOf(input.args);
      try {
        return await next(input);
      } catch (err) {
        if (!(err instanceof ContinueAsNew) && !isCancellation(err)) {
          const error = err as { name?: string; type?: string; message?: string };
          errorReporting.workflowFailed({ type: error.type ?? error.name ?? 'Error', message: String(error.message ?? err), ids });
        }
        throw err;
      }
    },
  };
  const outbound: WorkflowOutboundCallsInterceptor = {
    getLogAttributes(input, next) {
      return next({ ...ids, ...input });
    },
  };
  return { inbound: [inbound], outbound: [outbound] };
};
