import { useEffect, useReducer } from 'preact/hooks';
import { followOrgEvents } from '../api/events';
import { applyOrgEvent, dismissNotice, emptyNotices, resumeSeq, type NoticesState, type OrgEvent } from '../state/conversation';
import { href } from '../state/route';

type Action = { kind: 'event'; event: OrgEvent } | { kind: 'dismiss'; seq: number };
const reduce = (s: NoticesState, a: Action): NoticesState => (a.kind === 'event' ? applyOrgEvent(s, a.event) : dismissNotice(s, a.seq));

interface Saved {
  from: number;
  dismissed: number[];
}
function load(orgId: string): Saved {
  try {
    const saved = JSON.parse(localStorage.getItem(storageKey(orgId)) ?? 'null') as Partial<Saved> | null;
    return { from: Number(saved?.from) || 0, dismissed: Array.isArray(saved?.dismissed) ? saved.dismissed.filter((d): d is number => typeof d === 'number') : [] };
  } catch {
    return { from: 0, dismissed: [] };
  }
}

const storageKey = (orgId: string) => `console.notices.${orgId}`;

/**
 * The strip under the sections that tells who is needed right now, live from the org's event
 * feed: a conversation handed to people, a reply that did not reach the lead, an approval
 * waiting. Each links to where it is handled. The feed is resumed from where this browser's
 * strip last stood, so a reload shows what is still undismissed and anything newer.
 */
export function Notices({ orgId }: { orgId: string }) {
  // Mounted once per org (keyed by it), so the state is always this org's.
  const [state, dispatch] = useReducer(reduce, orgId, (id) => {
    const saved = load(id);
    return emptyNotices(saved.from, saved.dismissed);
  });
  useEffect(() => followOrgEvents(orgId, state.lastSeq, (event) => dispatch({ kind: 'event', event })), [orgId]);
  useEffect(() => {
    if (state.lastSeq > 0) localStorage.setItem(storageKey(orgId), JSON.stringify({ from: resumeSeq(state), dismissed: state.dismissed } satisfies Saved));
  }, [orgId, state]);
  if (state.items.length === 0) return null;
  return (
    <aside class="notices" aria-label="Needs you">
      <ul>
        {state.items.map((n) => (
          <li key={n.seq}>
            <a href={n.type === 'approval.requested' ? href({ name: 'approvals', orgId }) : href({ name: 'conversation', orgId, runId: n.runId })}>{n.text}</a>{' '}
            <span class="muted">{new Date(n.createdAt).toLocaleTimeString()}</span>{' '}
            <button type="button" class="link" aria-label={`Dismiss: ${n.text}`} onClick={() => dispatch({ kind: 'dismiss', seq: n.seq })}>
              Dismiss
            </button>
          </li>
        ))}
      </ul>
    </aside>
  );
}
