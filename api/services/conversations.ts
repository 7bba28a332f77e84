import type pg from 'pg';
import { z } from 'zod';
import { withPrincipal } from '../../lib/db.js';
import type { HandoffReason } from '../../lib/agent-rules.js';
import type { Principal } from '../../lib/principal.js';
import type { RunStatus } from '../../lib/run-status.js';
import { decodeKeysetCursor, encodeKeysetCursor, microsecondText } from '../pagination.js';
import { notFound } from '../problems.js';
import { requireOrgRole } from './org-access.js';

/**
 * Which conversations to list: `open` (still running), `ended`, `handoff` (handed to people
 * now), `attention` (flagged: a reply could not reach the lead), `needs_person` (either of the
 * last two: the queue a sales manager works through).
 */
export const conversationFilterSchema = z.enum(['open', 'ended', 'handoff', 'attention', 'needs_person']);
export type ConversationFilter = z.infer<typeof conversationFilterSchema>;

/** Who wrote a message: the lead (through the CRM), a member of the team (the console), the agent. */
export type Sender = 'lead' | 'staff' | 'agent';

export interface ConversationView {
  runId: string;
  agentId: string;
  threadKey: string;
  status: RunStatus;
  /** The CRM lead this thread is with (thread key `crm:<connectionId>:<leadId>`), else null. */
  lead: { connectionId: string; leadId: string } | null;
  lastMessage: { from: Sender; preview: string; at: string } | null;
  handoff: { reason: HandoffReason; since: string; until: string } | null;
  attention: { reason: 'reply_failed'; detail: string; since: string } | null;
  /** The latest activity: a message (lead, staff, agent), a handoff starting, a flag raised; else the start. The list's order. */
  lastActivityAt: string;
  createdAt: string;
}

interface ConversationRow {
  id: string;
  agent_id: string;
  thread_key: string;
  status: RunStatus;
  created_at: Date;
  last_activity_at: Date;
  /** last_activity_at to the microsecond, as text: a cursor from a JS Date (milliseconds) would skip rows within the same millisecond. */
  activity_key: string;
  handoff_reason: HandoffReason | null;
  handoff_at: Date | null;
  handoff_until: Date | null;
  attention: { reason: 'reply_failed'; detail: string; since: string } | null;
  last_from: Sender | null;
  last_preview: string | null;
  last_at: Date | null;
}

const PREVIEW_CHARS = 200;
const LEAD_THREAD = /^crm:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):(.{1,100})$/i;

// The thread's latest message, whoever wrote it: people's messages are conversation_messages rows
// (recorded when they arrive, before the agent's turn copies them into the event log), the
// agent's answers are llm.completed events with text. Each side is one backward index scan.
const conversationSelect = `
  select r.id, r.agent_id, r.thread_key, r.status, r.created_at, r.last_activity_at,
         ${microsecondText('r.last_activity_at', 'activity_key')}, r.handoff_reason, r.handoff_at, r.handoff_until,
         (select json_build_object('reason', a.reason, 'detail', a.detail, 'since', a.since)
            from public.run_attention a where a.run_id = r.id and a.org_id = r.org_id) as attention,
         last.sender as last_from, left(last.content, ${PREVIEW_CHARS}) as last_preview, last.created_at as last_at
    from public.agent_runs r
    left join lateral (
      select * from (
        (select case when m.source = 'crm_webhook' then 'lead' else 'staff' end as sender, m.content, m.created_at
           from public.conversation_messages m
          where m.org_id = r.org_id and m.run_id = r.id
          order by m.created_at desc limit 1)
        union all
        (select 'agent', e.payload->>'content', e.created_at
           from public.run_events e
          where e.run_id = r.id and e.org_id = r.org_id and e.type = 'llm.completed' and coalesce(e.payload->>'content', '') <> ''
          order by e.seq desc limit 1)
      ) latest order by created_at desc limit 1
    ) last on true`;

const filterClause: Record<ConversationFilter, string> = {
  open: `r.status not in ('completed', 'failed', 'cancelled')`,
  ended: `r.status in ('completed', 'failed', 'cancelled')`,
  handoff: `r.handoff_until > now()`,
  attention: `exists (select 1 from public.run_attention a where a.run_id = r.id and a.org_id = r.org_id)`,
  needs_person: `(r.handoff_until > now() or exists (select 1 from public.run_attention a where a.run_id = r.id and a.org_id = r.org_id))`,
};

function toView(row: ConversationRow): ConversationView {
  const lead = LEAD_THREAD.exec(row.thread_key);
  return {
    runId: row.id,
    agentId: row.agent_id,
    threadKey: row.thread_key,
    status: row.status,
    lead: lead ? { connectionId: lead[1]!.toLowerCase(), leadId: lead[2]! } : null,
    lastMessage: row.last_from && row.last_at ? { from: row.last_from, preview: row.last_preview ?? '', at: row.last_at.toISOString() } : null,
    handoff:
      row.handoff_until && row.handoff_until.getTime() > Date.now() && row.handoff_reason && row.handoff_at
        ? { reason: row.handoff_reason, since: row.handoff_at.toISOString(), until: row.handoff_until.toISOString() }
        : null,
    attention: row.attention ? { ...row.attention, since: new Date(row.attention.since).toISOString() } : null,
    lastActivityAt: row.last_activity_at.toISOString(),
    createdAt: row.created_at.toISOString(),
  };
}

/**
 * The list's keyset: (last_activity_at, id), newest first. A walk (first page, then each
 * nextCursor) serves every conversation at most once: one whose activity moves it above the
 * cursor during the walk is not served again below it, and shows on top at the next first page.
 * Every conversation without new activity during the walk is served exactly once.
 */
const activityCursorSchema = z.object({ activityAt: z.iso.datetime({ offset: true, precision: 6 }), id: z.uuid() });

/** Conversations (runs with a thread key) as a sales team reads them: who, where, last word, who must act. */
export function createConversationService(deps: { pool: pg.Pool }) {
  async function listConversations(
    principal: Principal,
    orgId: string,
    query: { agentId?: string | undefined; status?: ConversationFilter | undefined; limit: number; cursor?: string | undefined },
  ) {
    const after = decodeKeysetCursor(activityCursorSchema, query.cursor);
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'member');
      const { rows } = await tx.query<ConversationRow>(
        `${conversationSelect}
          where r.org_id = $1 and r.thread_key is not null
            and ($2::uuid is null or r.agent_id = $2)
            and ${query.status ? filterClause[query.status] : 'true'}
            and ($3::timestamptz is null or (r.last_activity_at, r.id) < ($3::timestamptz, $4::uuid))
          order by r.last_activity_at desc, r.id desc
          limit $5`,
        [orgId, query.agentId ?? null, after?.activityAt ?? null, after?.id ?? null, query.limit + 1],
      );
      const page = rows.slice(0, query.limit);
      const last = page[page.length - 1];
      return {
        items: page.map(toView),
        nextCursor: rows.length > query.limit && last ? encodeKeysetCursor({ activityAt: last.activity_key, id: last.id }) : null,
      };
    });
  }

  async function getConversation(principal: Principal, orgId: string, runId: string): Promise<ConversationView> {
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'member');
      const { rows } = await tx.query<ConversationRow>(`${conversationSelect} where r.id = $1 and r.org_id = $2 and r.thread_key is not null`, [runId, orgId]);
      if (!rows[0]) throw notFound('Conversation');
      return toView(rows[0]);
    });
  }

  /** Whether the principal may follow the org's conversations (a member); 404 otherwise. */
  async function assertCanFollow(principal: Principal, orgId: string): Promise<void> {
    await withPrincipal(deps.pool, principal, (tx) => requireOrgRole(tx, orgId, 'member'));
  }

  return { listConversations, getConversation, assertCanFollow };
}

export type ConversationService = ReturnType<typeof createConversationService>;
