import { useEffect, useReducer } from 'preact/hooks';
import { api, ok } from '../api/client';
import { followRun } from '../api/events';
import { href, type Route } from '../state/route';
import { applyDelta, applyEvent, describeEvent, emptyTimeline, type RunEvent, type TimelineState } from '../state/timeline';
import { ErrorBox, formatDate, formatUsd, Loading, Page, StatusBadge, useLoad } from '../ui';
import { ApprovalCard } from './approvals';

const STATUSES = ['queued', 'running', 'awaiting_approval', 'sleeping', 'completed', 'failed', 'cancelled'] as const;
type RunStatus = (typeof STATUSES)[number];

export function RunList({ route }: { route: Extract<Route, { name: 'runs' }> }) {
  const { orgId, agentId, status } = route;
  const agents = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}/agents', { params: { path: { orgId }, query: { limit: 100 } } })).items, [orgId]);
  const runs = useLoad(
    async () =>
      ok(
        await api.GET('/v1/orgs/{orgId}/runs', {
          params: { path: { orgId }, query: { limit: 50, ...(agentId ? { agentId } : {}), ...(status ? { status: status as RunStatus } : {}) } },
        }),
      ).items,
    [orgId, agentId, status],
  );
  const agentName = (id: string) => agents.data?.find((a) => a.id === id)?.name ?? 'Agent';
  const filter = (change: { agentId?: string; status?: string }) => {
    const next = { agentId, status, ...change };
    location.hash = href({ name: 'runs', orgId, ...(next.agentId ? { agentId: next.agentId } : {}), ...(next.status ? { status: next.status } : {}) });
  };
  return (
    <Page title="Runs">
      <div class="row filters">
        <label>
          Agent
          <select value={agentId ?? ''} onChange={(e) => filter({ agentId: (e.currentTarget as HTMLSelectElement).value })}>
            <option value="">All agents</option>
            {agents.data?.map((a) => (
              <option key={a.id} value={a.id}>
                {a.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Status
          <select value={status ?? ''} onChange={(e) => filter({ status: (e.currentTarget as HTMLSelectElement).value })}>
            <option value="">Any status</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s.replace(/_/g, ' ')}
              </option>
            ))}
          </select>
        </label>
        <button type="button" onClick={runs.reload}>
          Refresh
        </button>
      </div>
      <ErrorBox error={runs.error} />
      {runs.loading && <Loading what="runs" />}
      {runs.data?.length === 0 && <p>No runs match.</p>}
      <ul class="cards">
        {runs.data?.map((run) => (
          <li key={run.id} class="card">
            <h2>
              <a href={href({ name: 'run', orgId, runId: run.id })}>
                {agentName(run.agentId)} · {formatDate(run.createdAt)}
              </a>
            </h2>
            <p>
              <StatusBadge status={run.status} /> {run.usage.inputTokens + run.usage.outputTokens} tokens · {formatUsd(run.usage.costUsd)}
            </p>
          </li>
        ))}
      </ul>
    </Page>
  );
}

type Action = { kind: 'event'; event: RunEvent } | { kind: 'delta'; delta: { seq: number; text: string } } | { kind: 'reset' };
const reduce = (state: TimelineState, action: Action): TimelineState =>
  action.kind === 'event' ? applyEvent(state, action.event) : action.kind === 'delta' ? applyDelta(state, action.delta) : emptyTimeline();

/** A run followed live: its steps, tool calls, approvals, tokens and cost as the stream reports them. */
export function RunTimeline({ orgId, runId, temporalUiUrl }: { orgId: string; runId: string; temporalUiUrl: string | null }) {
  const run = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}/runs/{runId}', { params: { path: { orgId, runId } } })), [orgId, runId]);
  const [timeline, dispatch] = useReducer(reduce, undefined, emptyTimeline);
  const [streamError, setStreamError] = useReducer((_: string | null, m: string | null) => m, null);
  useEffect(() => {
    dispatch({ kind: 'reset' });
    return followRun(orgId, runId, {
      onEvent: (event) => dispatch({ kind: 'event', event }),
      onDelta: (delta) => dispatch({ kind: 'delta', delta }),
      onError: setStreamError,
    });
  }, [orgId, runId]);
  // The stored run (status, output) refreshes when the stream says something changed.
  useEffect(() => {
    if (timeline.lastSeq > 0) run.reload();
  }, [timeline.lastSeq]);

  if (run.error) return <ErrorBox error={run.error} />;
  if (!run.data) return <Loading what="the run" />;
  const r = run.data;
  const temporalLink = temporalUiUrl ? `${temporalUiUrl}/namespaces/default/workflows/${encodeURIComponent(r.workflowId)}` : null;
  return (
    <Page title="Run">
      <dl class="facts">
        <div>
          <dt>Status</dt>
          <dd>
            <StatusBadge status={r.status} />
          </dd>
        </div>
        <div>
          <dt>Tokens</dt>
          <dd data-testid="run-tokens">
            {timeline.inputTokens} in / {timeline.outputTokens} out
          </dd>
        </div>
        <div>
          <dt>Cost</dt>
          <dd>{formatUsd(timeline.costUsd)}</dd>
        </div>
        <div>
          <dt>Started</dt>
          <dd>{formatDate(r.startedAt ?? r.createdAt)}</dd>
        </div>
      </dl>
      <p class="row">
        <a href={href({ name: 'agent', orgId, agentId: r.agentId })}>Agent</a>
        {temporalLink && (
          <a href={temporalLink} target="_blank" rel="noreferrer">
            Open in Temporal UI (operators)
          </a>
        )}
        {!['completed', 'failed', 'cancelled'].includes(r.status) && (
          <button type="button" class="secondary" onClick={() => void api.POST('/v1/orgs/{orgId}/runs/{runId}/cancel', { params: { path: { orgId, runId } } }).then(run.reload)}>
            Cancel run
          </button>
        )}
      </p>
      {r.error && <ErrorBox error={new Error(`${r.error.type}: ${r.error.message}`)} />}
      {streamError && <p role="alert" class="error">{streamError}</p>}
      {timeline.pending.map((p) => (
        <ApprovalCard key={p.approvalId} orgId={orgId} runId={runId} approval={p} />
      ))}
      <h2>Timeline</h2>
      <ol class="timeline" aria-live="polite">
        {timeline.events.map((event) => (
          <li key={event.seq} data-type={event.type}>
            <span class="muted">{new Date(event.createdAt).toLocaleTimeString()}</span> {describeEvent(event)}
            {event.type === 'tool.completed' || event.type === 'approval.requested' ? (
              <details>
                <summary>Details</summary>
                <pre>{JSON.stringify(event.payload, null, 2)}</pre>
              </details>
            ) : null}
          </li>
        ))}
        {Object.entries(timeline.live).map(([seq, text]) => (
          <li key={`live-${seq}`} class="live" data-testid="live-tokens">
            {text}
          </li>
        ))}
      </ol>
      {r.output && (
        <>
          <h2>Output</h2>
          <p class="output">{r.output}</p>
        </>
      )}
    </Page>
  );
}
