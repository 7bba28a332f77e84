import { useEffect, useReducer, useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { followRun } from '../api/events';
import { href } from '../state/route';
import { applyDelta, applyEvent, emptyTimeline, type RunEvent, type TimelineState } from '../state/timeline';
import { ErrorBox, formValues, Page, useAction, useLoad } from '../ui';

type Action = { kind: 'event'; event: RunEvent } | { kind: 'delta'; delta: { seq: number; text: string } } | { kind: 'reset' };
const reduce = (s: TimelineState, a: Action): TimelineState => (a.kind === 'event' ? applyEvent(s, a.event) : a.kind === 'delta' ? applyDelta(s, a.delta) : emptyTimeline());

/** A lead thread with an agent: messages in, the agent's replies streamed live. */
export function Conversations({ orgId }: { orgId: string }) {
  const agents = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}/agents', { params: { path: { orgId }, query: { limit: 100 } } })).items, [orgId]);
  const [thread, setThread] = useState<{ agentId: string; threadKey: string; runId: string } | null>(null);
  const [timeline, dispatch] = useReducer(reduce, undefined, emptyTimeline);
  useEffect(() => {
    dispatch({ kind: 'reset' });
    if (!thread) return;
    return followRun(orgId, thread.runId, { onEvent: (event) => dispatch({ kind: 'event', event }), onDelta: (delta) => dispatch({ kind: 'delta', delta }) });
  }, [orgId, thread?.runId]);
  const send = useAction(async (values: Record<string, string>, form: HTMLFormElement) => {
    const agentId = values.agentId ?? '';
    const threadKey = values.threadKey ?? '';
    const accepted = ok(
      await api.POST('/v1/orgs/{orgId}/agents/{agentId}/conversations/{threadKey}/messages', { params: { path: { orgId, agentId, threadKey } }, body: { content: values.content ?? '' } }),
    );
    setThread({ agentId, threadKey, runId: accepted.runId });
    (form.elements.namedItem('content') as HTMLTextAreaElement).value = '';
  });
  return (
    <Page title="Conversations">
      <form class="stack" onSubmit={(e) => void send.run(formValues(e), e.currentTarget as HTMLFormElement)}>
        <div class="row">
          <label>
            Agent
            <select name="agentId" required>
              {agents.data?.map((a) => (
                <option key={a.id} value={a.id}>
                  {a.name}
                </option>
              ))}
            </select>
          </label>
          <label>
            Thread (lead or chat id)
            <input name="threadKey" required pattern="[!-~]+" maxLength={200} defaultValue={thread?.threadKey ?? ''} />
          </label>
        </div>
        <label>
          Message
          <textarea name="content" rows={2} required />
        </label>
        <ErrorBox error={send.error ?? agents.error} />
        <button type="submit" disabled={send.busy}>
          Send
        </button>
      </form>
      {thread && (
        <>
          <h2>
            Thread {thread.threadKey} · <a href={href({ name: 'run', orgId, runId: thread.runId })}>timeline</a>
          </h2>
          <ol class="chat" aria-live="polite">
            {timeline.events
              .filter((e) => e.type === 'user.message' || (e.type === 'llm.completed' && e.payload.content))
              .map((e) => (
                <li key={e.seq} class={e.type === 'user.message' ? 'from-lead' : 'from-agent'}>
                  {String(e.type === 'user.message' ? e.payload.content : e.payload.content)}
                </li>
              ))}
            {Object.entries(timeline.live).map(([seq, text]) => (
              <li key={`live-${seq}`} class="from-agent live">
                {text}
              </li>
            ))}
          </ol>
        </>
      )}
    </Page>
  );
}
