import { useEffect, useReducer, useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { followConversationActivity, followRun } from '../api/events';
import type { operations } from '../api/schema';
import {
  appendOlder,
  CONVERSATION_FILTERS,
  handoffReasonText,
  isConversationFilter,
  mergeFirstPage,
  SENDER_LABEL,
  threadMessages,
  type ConversationListState,
} from '../state/conversation';
import { href, type Route } from '../state/route';
import { applyDelta, applyEvent, emptyTimeline, type RunEvent, type TimelineState } from '../state/timeline';
import { ErrorBox, formatDate, formValues, Loading, Page, StatusBadge, useAction, useLoad } from '../ui';

type Conversation = operations['listConversations']['responses'][200]['content']['application/json']['items'][number];
type Action = { kind: 'event'; event: RunEvent } | { kind: 'delta'; delta: { seq: number; text: string } } | { kind: 'reset' };
const reduce = (s: TimelineState, a: Action): TimelineState => (a.kind === 'event' ? applyEvent(s, a.event) : a.kind === 'delta' ? applyDelta(s, a.delta) : emptyTimeline());
/** Hints come per change; a burst of them (an agent answering many leads) is one read of the first page. */
const LIST_HINT_COALESCE_MS = 250;

const threadTitle = (c: Pick<Conversation, 'lead' | 'threadKey'>) => (c.lead ? `Lead ${c.lead.leadId}` : `Thread ${c.threadKey}`);

function useAgentNames(orgId: string) {
  const agents = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}/agents', { params: { path: { orgId }, query: { limit: 100 } } })).items, [orgId]);
  return { agents, nameOf: (id: string) => agents.data?.find((a) => a.id === id)?.name ?? 'agent' };
}

/** Every lead and chat thread, the latest activity first, kept live; "Needs a person" is the queue of handed-off and flagged ones. */
export function ConversationList({ route }: { route: Extract<Route, { name: 'conversations' }> }) {
  const { orgId } = route;
  const status = isConversationFilter(route.status) ? route.status : undefined;
  const { agents, nameOf } = useAgentNames(orgId);
  const query = { ...(status ? { status } : {}), ...(route.agentId ? { agentId: route.agentId } : {}) };
  // The first page is read again whenever the org's conversations change (the API pushes a hint
  // per change, and on every reconnection); older pages, once asked for, stay below it.
  const first = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}/conversations', { params: { path: { orgId }, query: { limit: 25, ...query } } })), [orgId, status, route.agentId]);
  const { reload } = first;
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const refresh = () => {
      clearTimeout(timer);
      timer = setTimeout(reload, LIST_HINT_COALESCE_MS);
    };
    const stop = followConversationActivity(orgId, { onActivity: refresh, onOpen: refresh });
    return () => {
      clearTimeout(timer);
      stop();
    };
  }, [orgId, reload]);
  const [shown, setShown] = useState<ConversationListState<Conversation> | null>(null);
  useEffect(() => setShown(null), [orgId, status, route.agentId]);
  useEffect(() => {
    if (first.data) setShown((s) => mergeFirstPage(s, first.data!));
  }, [first.data]);
  const items = shown?.items ?? null;
  const nextCursor = shown?.nextCursor ?? null;
  const more = useAction(async () => {
    if (!nextCursor || !shown) return;
    const next = ok(await api.GET('/v1/orgs/{orgId}/conversations', { params: { path: { orgId }, query: { limit: 25, cursor: nextCursor, ...query } } }));
    setShown((s) => (s ? appendOlder(s, next) : s));
  });
  const go = (change: { status?: string; agentId?: string }) => {
    const next = { status: route.status, agentId: route.agentId, ...change };
    location.hash = href({ name: 'conversations', orgId, ...(next.status ? { status: next.status } : {}), ...(next.agentId ? { agentId: next.agentId } : {}) });
  };

  return (
    <Page title="Conversations">
      <div class="row">
        <label>
          Show
          <select value={status ?? ''} onChange={(e) => go({ status: (e.currentTarget as HTMLSelectElement).value })}>
            {CONVERSATION_FILTERS.map(([value, label]) => (
              <option key={value} value={value}>
                {label}
              </option>
            ))}
          </select>
        </label>
        <label>
          Agent
          <select value={route.agentId ?? ''} onChange={(e) => go({ agentId: (e.currentTarget as HTMLSelectElement).value })}>
            <option value="">All agents</option>
            {agents.data?.map((a) => (
              <option key={a.id} value={a.id}>
                {a.name}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorBox error={first.error ?? more.error} />
      {!items && first.loading && <Loading what="conversations" />}
      {items && items.length === 0 && <p class="muted">{status ? 'No conversation matches.' : 'No conversations yet: they start when a lead writes or when you send a message below.'}</p>}
      <ul class="threads" aria-label="Conversations">
        {items?.map((c) => (
          <li key={c.runId} class="card">
            <h2>
              <a href={href({ name: 'conversation', orgId, runId: c.runId })}>{threadTitle(c)}</a>
            </h2>
            <p class="muted">
              {nameOf(c.agentId)} · <StatusBadge status={c.status} />
              {c.handoff && <> <span class="badge badge-pending">handed off</span></>}
              {c.attention && <> <span class="badge badge-failed">needs attention</span></>}
            </p>
            {c.lastMessage ? (
              <p class="clamp">
                <strong>{SENDER_LABEL[c.lastMessage.from]}:</strong> {c.lastMessage.preview} <span class="muted">· {formatDate(c.lastMessage.at)}</span>
              </p>
            ) : (
              <p class="muted">No message yet · started {formatDate(c.createdAt)}</p>
            )}
          </li>
        ))}
      </ul>
      {nextCursor && (
        <button type="button" class="secondary" disabled={more.busy} onClick={() => void more.run()}>
          Show older
        </button>
      )}
      <StartConversation orgId={orgId} agents={agents.data ?? []} />
    </Page>
  );
}

/** Writes to a thread by its key (a chat id, or `crm:<connectionId>:<leadId>`), starting it when there is none. */
function StartConversation({ orgId, agents }: { orgId: string; agents: Array<{ id: string; name: string }> }) {
  const send = useAction(async (values: Record<string, string>) => {
    const accepted = ok(
      await api.POST('/v1/orgs/{orgId}/agents/{agentId}/conversations/{threadKey}/messages', {
        params: { path: { orgId, agentId: values.agentId ?? '', threadKey: values.threadKey ?? '' } },
        body: { content: values.content ?? '' },
      }),
    );
    location.hash = href({ name: 'conversation', orgId, runId: accepted.runId });
  });
  return (
    <form class="stack card" aria-labelledby="start-title" onSubmit={(e) => void send.run(formValues(e))}>
      <h2 id="start-title">Write to a thread</h2>
      <div class="row">
        <label>
          Agent
          <select name="agentId" required>
            {agents.map((a) => (
              <option key={a.id} value={a.id}>
                {a.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Thread (lead or chat id)
          <input name="threadKey" required pattern="[!-~]+" maxLength={200} />
        </label>
      </div>
      <label>
        Message
        <textarea name="content" rows={2} required />
      </label>
      <ErrorBox error={send.error} />
      <button type="submit" disabled={send.busy}>
        Send
      </button>
    </form>
  );
}

/** One thread: the transcript live over SSE, who must act (handoff, attention), the lead's memory, and a reply box. */
export function ConversationThread({ orgId, runId }: { orgId: string; runId: string }) {
  const { nameOf } = useAgentNames(orgId);
  const conversation = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}/conversations/{runId}', { params: { path: { orgId, runId } } })), [orgId, runId]);
  const [timeline, dispatch] = useReducer(reduce, undefined, emptyTimeline);
  const [streamError, setStreamError] = useState<string | null>(null);
  useEffect(() => {
    dispatch({ kind: 'reset' });
    return followRun(orgId, runId, {
      onEvent: (event) => dispatch({ kind: 'event', event }),
      onDelta: (delta) => dispatch({ kind: 'delta', delta }),
      onError: setStreamError,
    });
  }, [orgId, runId]);
  // A handoff, a resume or a failed reply changes who must act: read the conversation again.
  const turns = timeline.events.filter((e) => e.type === 'handoff.requested' || e.type === 'reply_failed' || e.type === 'run.completed' || e.type === 'run.cancelled' || e.type === 'run.failed').length;
  useEffect(() => {
    if (turns > 0) conversation.reload();
  }, [turns]);

  const c = conversation.data;
  const resume = useAction(async () => {
    ok(await api.POST('/v1/orgs/{orgId}/runs/{runId}/handoff/resume', { params: { path: { orgId, runId } } }));
    conversation.reload();
  });
  const handled = useAction(async () => {
    ok(await api.DELETE('/v1/orgs/{orgId}/runs/{runId}/attention', { params: { path: { orgId, runId } } }));
    conversation.reload();
  });
  const send = useAction(async (values: Record<string, string>, form: HTMLFormElement) => {
    if (!c) return;
    const accepted = ok(
      await api.POST('/v1/orgs/{orgId}/agents/{agentId}/conversations/{threadKey}/messages', {
        params: { path: { orgId, agentId: c.agentId, threadKey: c.threadKey } },
        body: { content: values.content ?? '' },
      }),
    );
    (form.elements.namedItem('content') as HTMLTextAreaElement).value = '';
    // An ended conversation's thread continues in a new run.
    if (accepted.runId !== runId) location.hash = href({ name: 'conversation', orgId, runId: accepted.runId });
  });
  const messages = threadMessages(timeline.events, timeline.live);

  return (
    <Page title={c ? threadTitle(c) : 'Conversation'} actions={<a href={href({ name: 'conversations', orgId })}>All conversations</a>}>
      <ErrorBox error={conversation.error} />
      {c && (
        <p class="muted">
          {nameOf(c.agentId)} · <StatusBadge status={c.status} /> · thread <code>{c.threadKey}</code> · <a href={href({ name: 'run', orgId, runId })}>Run timeline</a>
        </p>
      )}
      {c?.handoff && (
        <div class="banner warn" role="status" aria-label="Handed off">
          <p>
            <strong>With people:</strong> {handoffReasonText(c.handoff.reason)}. The agent does not answer until {formatDate(c.handoff.until)} or until you resume it.
          </p>
          <ErrorBox error={resume.error} />
          <button type="button" disabled={resume.busy} onClick={() => void resume.run()}>
            Resume the agent
          </button>
        </div>
      )}
      {c?.attention && (
        <div class="banner danger" role="status" aria-label="Needs attention">
          <p>
            <strong>Needs attention:</strong> a reply did not reach the lead ({c.attention.detail || 'the CRM refused it'}), since {formatDate(c.attention.since)}. Answer the lead in the CRM, then mark it handled.
          </p>
          <ErrorBox error={handled.error} />
          <button type="button" disabled={handled.busy} onClick={() => void handled.run()}>
            Mark as handled
          </button>
        </div>
      )}
      {c?.lead && <LeadMemory orgId={orgId} connectionId={c.lead.connectionId} leadId={c.lead.leadId} />}
      {streamError && <ErrorBox error={new Error(streamError)} />}
      <ol class="chat" aria-label="Messages" aria-live="polite">
        {messages.map((m) =>
          'note' in m ? (
            <li key={m.key} class="note">
              {m.note}
            </li>
          ) : (
            <li key={m.key} class={`from-${m.from}${m.live ? ' live' : ''}`}>
              <span class="sender">{SENDER_LABEL[m.from]}</span>
              {m.text}
            </li>
          ),
        )}
      </ol>
      {timeline.events.length === 0 && !streamError && <Loading what="messages" />}
      {c && (
        <form class="stack" onSubmit={(e) => void send.run(formValues(e), e.currentTarget as HTMLFormElement)}>
          <label>
            Message to the thread
            <textarea name="content" rows={2} required />
          </label>
          <ErrorBox error={send.error} />
          <button type="submit" disabled={send.busy}>
            Send
          </button>
        </form>
      )}
    </Page>
  );
}

/** What the agents remember of the lead from earlier conversations (a summary each). */
function LeadMemory({ orgId, connectionId, leadId }: { orgId: string; connectionId: string; leadId: string }) {
  const memory = useLoad(
    async () => ok(await api.GET('/v1/orgs/{orgId}/crm/connections/{connectionId}/leads/{leadId}/memory', { params: { path: { orgId, connectionId, leadId } } })).items,
    [orgId, connectionId, leadId],
  );
  if (memory.error) return <ErrorBox error={memory.error} />;
  if (!memory.data || memory.data.length === 0) return null;
  return (
    <details class="card" open>
      <summary>What the agents remember of this lead</summary>
      <ul>
        {memory.data.slice(0, 3).map((m) => (
          <li key={m.id}>
            {m.summary} <span class="muted">· {formatDate(m.createdAt)}</span>
          </li>
        ))}
      </ul>
    </details>
  );
}
