/**
 * Replays workflow histories against workflow code, the way a worker would after a deploy, and
 * explains any divergence in terms an on-call engineer can act on: which history event the new
 * code disagreed with, what kind of event it was, and the SDK's own description.
 *
 * Used by `npm run replay` (histories from a cluster), the committed-history test
 * (tests/replay/replay.test.ts) and `npm run replay:record`.
 */
import type { HistoryAndWorkflowId } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { Worker, type ReplayWorkerOptions } from '@temporalio/worker';
import protos, { type temporal } from '@temporalio/proto';
import { workflowsPath } from './agent-runs-worker.js';
import { workerObservability } from './observability.js';

type History = temporal.api.history.v1.IHistory;

export interface ReplayOutcome {
  workflowId: string;
  runId: string;
  workflowType: string;
  events: number;
  deterministic: boolean;
  /** Set when replay failed: the SDK's error class and message, plus where it diverged if the message says. */
  failure?: {
    kind: string;
    message: string;
    eventId?: number;
    eventType?: string;
  };
}

export interface ReplayOptions {
  dataConverter: DataConverter;
  /** A prebuilt bundle (tests); otherwise the current `workflows/index.ts` is bundled once. */
  workflowBundle?: ReplayWorkerOptions['workflowBundle'];
  replayName?: string;
}

const HistoryMessage = protos.temporal.api.history.v1.History;

/**
 * Histories are saved as protobuf.js plain objects (enum names, base64 bytes, string int64s).
 * Not the SDK's `historyToJSON`: with the protobufjs versions installed here it throws
 * "type must be a Type", so we use the message class's own toObject/fromObject, which
 * round-trip losslessly.
 */
export function historyToFixture(history: History): unknown {
  return HistoryMessage.toObject(HistoryMessage.fromObject(history as Record<string, unknown>), { enums: String, bytes: String, longs: String });
}

/** Reads a history saved by `npm run replay:record` (or `historyToFixture`). */
export function historyFromFile(json: unknown): History {
  if (typeof json !== 'object' || json === null || !Array.isArray((json as { events?: unknown }).events)) {
    throw new TypeError('not a history: expected an object with an array of events');
  }
  return HistoryMessage.fromObject(json as Record<string, unknown>);
}

function eventTypeName(history: History, eventId: number): string | undefined {
  const event = history.events?.find((e) => Number(e.eventId) === eventId);
  if (!event) return undefined;
  // The event's attributes field names its type (e.g. activityTaskScheduledEventAttributes).
  const attributes = Object.keys(event).find((k) => k.endsWith('EventAttributes') && (event as Record<string, unknown>)[k]);
  return attributes?.replace(/EventAttributes$/, '').replace(/^./, (c) => c.toUpperCase());
}

function workflowTypeOf(history: History): string {
  return history.events?.[0]?.workflowExecutionStartedEventAttributes?.workflowType?.name ?? 'unknown';
}

export async function* replayHistories(
  histories: AsyncIterable<HistoryAndWorkflowId> | Iterable<HistoryAndWorkflowId>,
  options: ReplayOptions,
): AsyncGenerator<ReplayOutcome> {
  // Kept so a divergence can be described with the event it happened at.
  const seen = new Map<string, History>();
  async function* remember(): AsyncGenerator<HistoryAndWorkflowId> {
    for await (const item of histories) {
      seen.set(item.workflowId, item.history as History);
      yield item;
    }
  }
  const results = Worker.runReplayHistories(
    {
      ...(options.workflowBundle ? { workflowBundle: options.workflowBundle } : { workflowsPath }),
      dataConverter: options.dataConverter,
      replayName: options.replayName ?? 'replay',
      // The same interceptors as live workers (their sinks never fire during replay).
      ...workerObservability(),
    },
    remember(),
  );
  for await (const result of results) {
    const history = seen.get(result.workflowId) ?? {};
    seen.delete(result.workflowId);
    const outcome: ReplayOutcome = {
      workflowId: result.workflowId,
      runId: result.runId,
      workflowType: workflowTypeOf(history),
      events: history.events?.length ?? 0,
      deterministic: !result.error,
    };
    if (result.error) {
      const message = result.error.message;
      // Core's nondeterminism messages quote the event, e.g. "HistoryEvent(id: 5, ActivityTaskScheduled)".
      const match = /event(?:\s*id)?[^0-9]{0,12}(\d+)/i.exec(message);
      const eventId = match ? Number(match[1]) : undefined;
      outcome.failure = {
        kind: result.error.name,
        message,
        ...(eventId !== undefined ? { eventId } : {}),
        ...(eventId !== undefined && eventTypeName(history, eventId) ? { eventType: eventTypeName(history, eventId)! } : {}),
      };
    }
    yield outcome;
  }
}

/** One line per history, for terminals and CI logs. */
export function describeOutcome(outcome: ReplayOutcome): string {
  const head = `${outcome.workflowType} ${outcome.workflowId} (run ${outcome.runId}, ${outcome.events} events)`;
  if (outcome.deterministic) return `✔ deterministic   ${head}`;
  const where = outcome.failure?.eventId !== undefined ? ` at event ${outcome.failure.eventId}${outcome.failure.eventType ? ` (${outcome.failure.eventType})` : ''}` : '';
  return `✘ NON-DETERMINISTIC ${head}${where}\n    ${outcome.failure?.kind}: ${outcome.failure?.message.replace(/\n/g, '\n    ')}`;
}
