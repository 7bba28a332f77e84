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
import { payloadKeyProblem } from '../lib/temporal-codec.js';
import type { Keyring } from '../lib/crypto.js';
import { workflowsPath } from './agent-runs-worker.js';
import { workerObservability } from './observability.js';

type History = temporal.api.history.v1.IHistory;

/**
 * What replaying one history showed. Only `nondeterministic` means the code cannot resume the
 * run; `undecodable` (payload keys missing or wrong) and `failed` (any other replay error) say
 * nothing about determinism and must never be reported as it.
 */
export type ReplayStatus = 'deterministic' | 'nondeterministic' | 'undecodable' | 'failed';

export interface ReplayOutcome {
  workflowId: string;
  runId: string;
  workflowType: string;
  events: number;
  status: ReplayStatus;
  /** status === 'deterministic'. */
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
  /**
   * Check every encrypted payload against this keyring before replaying (scripts/replay.ts,
   * deploy:promote): a history it cannot decrypt is reported `undecodable` without replaying.
   */
  payloadKeys?: { keyring: Keyring | undefined };
}

/** A replay error that is a decoding failure, for histories replayed without the pre-check. */
const DECODING_FAILURE = /Unknown encoding|PayloadDecryptionError|does not decrypt with key|is not in TEMPORAL_CODEC_KEYS/;

function statusOf(error: Error): ReplayStatus {
  if (error.name === 'DeterminismViolationError') return 'nondeterministic';
  return DECODING_FAILURE.test(error.message) ? 'undecodable' : 'failed';
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
  // Histories whose payloads cannot be decrypted are reported without being replayed.
  const undecodable: ReplayOutcome[] = [];
  const undecodableOutcome = (item: HistoryAndWorkflowId, problem: { kind: string; message: string }): ReplayOutcome => {
    const history = item.history as History;
    return {
      workflowId: item.workflowId,
      runId: history.events?.[0]?.workflowExecutionStartedEventAttributes?.originalExecutionRunId ?? '?',
      workflowType: workflowTypeOf(history),
      events: history.events?.length ?? 0,
      status: 'undecodable',
      deterministic: false,
      failure: problem,
    };
  };
  const problemOf = (item: HistoryAndWorkflowId) => (options.payloadKeys ? payloadKeyProblem(item.history, options.payloadKeys.keyring) : Promise.resolve(undefined));
  // The replay worker (it bundles the workflow code) starts at the first history it can read,
  // so a run where no payload decrypts reports that at once instead of bundling for nothing.
  const iterator = (Symbol.asyncIterator in histories ? histories[Symbol.asyncIterator]() : histories[Symbol.iterator]()) as AsyncIterator<HistoryAndWorkflowId> | Iterator<HistoryAndWorkflowId>;
  let first: HistoryAndWorkflowId | undefined;
  for (;;) {
    const next = await iterator.next();
    if (next.done) return;
    const problem = await problemOf(next.value);
    if (!problem) {
      first = next.value;
      break;
    }
    yield undecodableOutcome(next.value, problem);
  }
  async function* remember(): AsyncGenerator<HistoryAndWorkflowId> {
    for (let item = first; item; ) {
      seen.set(item.workflowId, item.history as History);
      yield item;
      item = undefined;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        const problem = await problemOf(next.value);
        if (!problem) {
          item = next.value;
          break;
        }
        undecodable.push(undecodableOutcome(next.value, problem));
      }
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
    yield* undecodable.splice(0);
    const history = seen.get(result.workflowId) ?? {};
    seen.delete(result.workflowId);
    const status: ReplayStatus = result.error ? statusOf(result.error) : 'deterministic';
    const outcome: ReplayOutcome = {
      workflowId: result.workflowId,
      runId: result.runId,
      workflowType: workflowTypeOf(history),
      events: history.events?.length ?? 0,
      status,
      deterministic: status === 'deterministic',
    };
    if (result.error) {
      const message = result.error.message;
      // Core's nondeterminism messages quote the event, e.g. "HistoryEvent(id: 5, ActivityTaskScheduled)".
      const match = status === 'nondeterministic' ? /event(?:\s*id)?[^0-9]{0,12}(\d+)/i.exec(message) : null;
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
  yield* undecodable.splice(0);
}

/** One line per history, for terminals and CI logs; each status says what it is, and only non-determinism says so. */
export function describeOutcome(outcome: ReplayOutcome): string {
  const head = `${outcome.workflowType} ${outcome.workflowId} (run ${outcome.runId}, ${outcome.events} events)`;
  const detail = `\n    ${outcome.failure?.kind}: ${outcome.failure?.message.replace(/\n/g, '\n    ')}`;
  switch (outcome.status) {
    case 'deterministic':
      return `✔ deterministic   ${head}`;
    case 'nondeterministic': {
      const where = outcome.failure?.eventId !== undefined ? ` at event ${outcome.failure.eventId}${outcome.failure.eventType ? ` (${outcome.failure.eventType})` : ''}` : '';
      return `✘ NON-DETERMINISTIC ${head}${where}${detail}`;
    }
    case 'undecodable':
      return `? CANNOT DECODE   ${head} (not replayed: payload keys)${detail}`;
    case 'failed':
      return `! REPLAY FAILED   ${head} (not a determinism verdict)${detail}`;
  }
}
