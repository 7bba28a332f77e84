import { useEffect, useReducer, useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { followRun } from '../api/events';
import { href } from '../state/route';
import { applyEvent, emptyTimeline, type PendingApproval, type RunEvent, type TimelineState } from '../state/timeline';
import { ErrorBox, Page, useAction } from '../ui';

/** One pending approval (or question) with approve / reject and an optional comment. */
export function ApprovalCard({ orgId, runId, approval }: { orgId: string; runId: string; approval: PendingApproval }) {
  const [comment, setComment] = useState('');
  const decide = useAction(async (decision: 'approve' | 'reject') => {
    ok(
      await api.POST('/v1/orgs/{orgId}/runs/{runId}/approvals/{approvalId}', {
        params: { path: { orgId, runId, approvalId: approval.approvalId } },
        body: { decision, ...(comment.trim() ? { comment: comment.trim() } : {}) },
      }),
    );
  });
  const question = approval.kind !== 'approval';
  const id = `comment-${approval.approvalId}`;
  return (
    <article class="card approval" aria-label={`Approval for ${approval.toolName}`}>
      <h3>{question ? 'The agent asks' : `Approve ${approval.toolName}?`}</h3>
      <pre class="args">{JSON.stringify(approval.arguments, null, 2)}</pre>
      <p class="muted">
        Requested {new Date(approval.requestedAt).toLocaleString()} · <a href={href({ name: 'run', orgId, runId })}>Open run</a>
      </p>
      <label for={id}>{question ? 'Answer' : 'Comment (optional)'}</label>
      <textarea id={id} rows={2} value={comment} onInput={(e) => setComment((e.currentTarget as HTMLTextAreaElement).value)} />
      <ErrorBox error={decide.error} />
      <div class="row">
        <button type="button" disabled={decide.busy} onClick={() => void decide.run('approve')}>
          {question ? 'Send answer' : 'Approve'}
        </button>
        <button type="button" class="danger" disabled={decide.busy} onClick={() => void decide.run('reject')}>
          Reject
        </button>
      </div>
    </article>
  );
}

const MAX_STREAMS = 3;

type Timelines = Record<string, TimelineState>;
const reduce = (state: Timelines, action: { runId: string; event: RunEvent }): Timelines => ({
  ...state,
  [action.runId]: applyEvent(state[action.runId] ?? emptyTimeline(), action.event),
});

/**
 * Every approval waiting in the org: runs awaiting approval (re-listed every few seconds) each
 * followed over their event stream, so requests and decisions (from anyone) show up at once.
 */
export function ApprovalsInbox({ orgId }: { orgId: string }) {
  const [runIds, setRunIds] = useState<string[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [timelines, dispatch] = useReducer(reduce, {});
  useEffect(() => {
    let live = true;
    const list = async () => {
      try {
        const runs = ok(await api.GET('/v1/orgs/{orgId}/runs', { params: { path: { orgId }, query: { status: 'awaiting_approval', limit: 100 } } })).items;
        if (live) setRunIds((known) => [...new Set([...known, ...runs.map((r) => r.id)])]);
        setError(null);
      } catch (err) {
        if (live) setError(err);
      }
    };
    void list();
    const timer = setInterval(() => void list(), 5000);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [orgId]);
  // A run leaves the inbox once its approvals are decided; streams are capped because a browser
  // opens only six HTTP/1.1 connections per origin and the rest of the console needs some.
  const waiting = runIds.filter((runId) => {
    const t = timelines[runId];
    return !t || t.finished === false && (t.pending.length > 0 || !t.events.some((e) => e.type === 'approval.decided'));
  });
  const followed = waiting.slice(0, MAX_STREAMS);
  useEffect(() => {
    const stops = followed.map((runId) => followRun(orgId, runId, { onEvent: (event) => dispatch({ runId, event }), onDelta: () => {} }));
    return () => stops.forEach((stop) => stop());
  }, [orgId, followed.join(',')]);

  const pending = followed.flatMap((runId) => (timelines[runId]?.pending ?? []).map((approval) => ({ runId, approval })));
  return (
    <Page title="Approvals">
      <ErrorBox error={error} />
      <p class="muted" role="status" aria-live="polite">
        {pending.length === 0 ? 'Nothing waits for you.' : `${pending.length} waiting`}
        {waiting.length > followed.length ? ` (more in ${waiting.length - followed.length} other runs: decide these first)` : ''}
      </p>
      {pending.map(({ runId, approval }) => (
        <ApprovalCard key={approval.approvalId} orgId={orgId} runId={runId} approval={approval} />
      ))}
    </Page>
  );
}
