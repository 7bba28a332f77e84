/** A durable run event as GET /runs/:runId/events streams it. */
export interface RunEvent {
  seq: number;
  type: string;
  payload: Record<string, unknown>;
  createdAt: string;
}

export interface PendingApproval {
  approvalId: string;
  seq: number;
  kind: string;
  toolName: string;
  arguments: unknown;
  requestedAt: string;
}

export interface TimelineState {
  events: RunEvent[];
  /** Tokens streamed for a step not yet recorded, keyed by the step's seq. */
  live: Record<number, string>;
  lastSeq: number;
  finished: boolean;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
  pending: PendingApproval[];
}

export const TERMINAL_EVENTS: ReadonlySet<string> = new Set(['run.completed', 'run.failed', 'run.cancelled']);

export const emptyTimeline = (): TimelineState => ({
  events: [],
  live: {},
  lastSeq: 0,
  finished: false,
  inputTokens: 0,
  outputTokens: 0,
  costUsd: 0,
  pending: [],
});

const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

/**
 * Folds one durable event into the timeline. Events come at least once (a reconnect resumes from
 * Last-Event-ID, but a race can repeat one), so anything at or below lastSeq is ignored.
 */
export function applyEvent(state: TimelineState, event: RunEvent): TimelineState {
  if (event.seq <= state.lastSeq) return state;
  const { [event.seq]: _streamed, ...live } = state.live;
  const next: TimelineState = { ...state, events: [...state.events, event], live, lastSeq: event.seq };
  if (event.type === 'llm.completed') {
    const usage = (event.payload.usage ?? {}) as Record<string, unknown>;
    next.inputTokens += num(usage.inputTokens);
    next.outputTokens += num(usage.outputTokens);
    next.costUsd += num(event.payload.costUsd);
  } else if (event.type === 'approval.requested') {
    next.pending = [
      ...state.pending,
      {
        approvalId: String(event.payload.approvalId),
        seq: event.seq,
        kind: String(event.payload.kind ?? 'approval'),
        toolName: String(event.payload.toolName ?? ''),
        arguments: event.payload.arguments,
        requestedAt: event.createdAt,
      },
    ];
  } else if (event.type === 'approval.decided') {
    next.pending = state.pending.filter((p) => p.approvalId !== event.payload.approvalId);
  }
  if (TERMINAL_EVENTS.has(event.type)) {
    next.finished = true;
    next.pending = [];
  }
  return next;
}

/** Appends streamed tokens of a step that has not been recorded yet; stale deltas are dropped. */
export function applyDelta(state: TimelineState, delta: { seq: number; text: string }): TimelineState {
  if (delta.seq <= state.lastSeq) return state;
  return { ...state, live: { ...state.live, [delta.seq]: (state.live[delta.seq] ?? '') + delta.text } };
}

/** One line a person reads for an event, without the raw JSON. */
export function describeEvent(event: RunEvent): string {
  const p = event.payload;
  switch (event.type) {
    case 'run.started':
      return 'Run started';
    case 'user.message':
      return `Message from ${String(p.author ?? 'user')}: ${String(p.content ?? '')}`;
    case 'llm.completed': {
      const calls = Array.isArray(p.toolCalls) ? p.toolCalls.length : 0;
      const usage = (p.usage ?? {}) as Record<string, unknown>;
      const text = typeof p.content === 'string' && p.content ? p.content : calls > 0 ? `asked for ${calls} tool call${calls === 1 ? '' : 's'}` : '(no text)';
      return `${String(p.model ?? 'Model')}: ${text} (${num(usage.inputTokens)} in / ${num(usage.outputTokens)} out tokens)`;
    }
    case 'tool.completed':
      return `Tool ${String(p.name ?? '')} ${p.error ? `failed: ${JSON.stringify(p.error)}` : 'completed'}`;
    case 'approval.requested':
      return `Approval requested for ${String(p.toolName ?? 'a tool call')}`;
    case 'approval.decided':
      return `Approval ${String(p.status ?? 'decided')}`;
    case 'run.completed':
      return 'Run completed';
    case 'run.failed':
      return `Run failed${p.error ? `: ${JSON.stringify(p.error)}` : ''}`;
    case 'run.cancelled':
      return 'Run cancelled';
    default:
      return event.type.replace(/[._]/g, ' ');
  }
}
