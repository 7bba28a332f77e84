/**
 * The agent's answer into the lead's CRM thread, exactly once per part: a ledger row is
 * committed before each send and marked sent after it. Neither CRM takes an idempotency key, so
 * a retry that finds a row attempted but unconfirmed (the CRM may have accepted before the
 * worker died) first reads the thread back for our own message and sends only if it is missing.
 * A 4xx ends as a `reply_failed` run event; the conversation goes on.
 */
import { ConnectionUnavailableError } from '../../integrations/crm/credentials.js';
import { CrmError } from '../../integrations/crm/http.js';
import { splitForChannel } from '../../integrations/crm/messaging/split.js';
import { replyTargetSchema, type ReplyRoute, type ReplyTarget } from '../../integrations/crm/messaging/types.js';
import { autocommitAsPrincipal, withPrincipal } from '../../lib/db.js';
import { toActivityFailure } from '../activity-failure.js';
import type { RunStep } from './contract.js';
import type { ResolvedAgentRunDeps } from './deps.js';
import { appendEvent, runGone, workerOf } from './run-store.js';

/** The answer to send (event `answerSeq`); `seq` is where a `reply_failed` event goes. */
export interface SendReplyStep extends RunStep {
  answerSeq: number;
}

export type SendReplyOutcome = 'sent' | 'not_crm_bound' | 'failed';

// Our clock and the CRM's may disagree a little: a read-back looks this far before the attempt.
const CLOCK_SKEW_MS = 60_000;

interface ReplyContext {
  thread_key: string | null;
  reply_target: unknown;
  answer: string | null;
  failed_recorded: boolean;
  ledger: { part: number; status: 'attempted' | 'sent'; attempted_at: string }[];
}

export function createSendReplyActivities(deps: ResolvedAgentRunDeps) {
  const { pool, credentials } = deps;

  async function sendReply(step: SendReplyStep): Promise<SendReplyOutcome> {
    const context = await loadContext(step);
    const connectionId = context.thread_key?.match(/^crm:([0-9a-f-]{36}):/)?.[1];
    const parsed = replyTargetSchema.safeParse(context.reply_target);
    // Conversations in the app, and CRM threads whose lead never named a thread we can reach.
    if (!connectionId || !parsed.success || context.answer === null || context.answer.trim() === '') return 'not_crm_bound';
    if (context.failed_recorded) return 'failed';
    const target = parsed.data;
    if (!credentials) return fail(step, target, 'CRM credentials are not configured on this worker', null);
    const route: ReplyRoute = target.provider === 'kommo' ? 'kommo_talk' : 'hubspot_thread';

    try {
      const { adapter } = await credentials.open({ orgId: step.orgId, connectionId });
      const messenger = adapter.messenger({ hubspotSenderActorId: null, kommoSalesbot: null });
      const parts = splitForChannel(context.answer, messenger.maxChars(target));
      for (const [part, text] of parts.entries()) {
        const recorded = context.ledger.find((row) => row.part === part);
        if (recorded?.status === 'sent') continue;
        if (recorded) {
          const since = new Date(new Date(recorded.attempted_at).getTime() - CLOCK_SKEW_MS);
          const earlier = await messenger.findSent(target, text, since, route);
          if (earlier) {
            await markSent(step, part, earlier.externalId);
            continue;
          }
        } else {
          await autocommitAsPrincipal(
            pool,
            workerOf(step.orgId),
            `insert into public.crm_reply_sends (org_id, run_id, answer_seq, part, route) values ($1, $2, $3, $4, $5)
             on conflict (run_id, answer_seq, part) do nothing`,
            [step.orgId, step.runId, step.answerSeq, part, route],
          );
        }
        const sent = await messenger.send(target, text, route);
        await markSent(step, part, sent.externalId);
      }
      return 'sent';
    } catch (err) {
      if (err instanceof CrmError && !err.retryable) return fail(step, target, err.message, err.details.status ?? null);
      if (err instanceof ConnectionUnavailableError) return fail(step, target, err.message, null);
      throw toActivityFailure(err);
    }
  }

  async function loadContext(step: SendReplyStep): Promise<ReplyContext> {
    const { rows } = await autocommitAsPrincipal<ReplyContext>(
      pool,
      workerOf(step.orgId),
      `select r.thread_key, r.reply_target,
              (select e.payload->>'content' from public.run_events e
                where e.run_id = r.id and e.org_id = r.org_id and e.seq = $3 and e.type = 'llm.completed') as answer,
              exists (select 1 from public.run_events e where e.run_id = r.id and e.org_id = r.org_id and e.seq = $4) as failed_recorded,
              coalesce((select json_agg(json_build_object('part', s.part, 'status', s.status, 'attempted_at', s.attempted_at))
                          from public.crm_reply_sends s
                         where s.run_id = r.id and s.org_id = r.org_id and s.answer_seq = $3), '[]'::json) as ledger
         from public.agent_runs r
        where r.id = $1 and r.org_id = $2`,
      [step.runId, step.orgId, step.answerSeq, step.seq],
    );
    if (!rows[0]) throw runGone(step.runId);
    return rows[0];
  }

  async function markSent(step: SendReplyStep, part: number, externalId: string): Promise<void> {
    await autocommitAsPrincipal(
      pool,
      workerOf(step.orgId),
      `update public.crm_reply_sends set status = 'sent', external_id = $5, sent_at = now()
        where run_id = $1 and org_id = $2 and answer_seq = $3 and part = $4`,
      [step.runId, step.orgId, step.answerSeq, part, externalId.slice(0, 200)],
    );
  }

  /** The CRM refused the reply for good: recorded for people to see, and the conversation goes on. */
  async function fail(step: SendReplyStep, target: ReplyTarget, reason: string, status: number | null): Promise<'failed'> {
    const payload = { answerSeq: step.answerSeq, provider: target.provider, status, reason: reason.slice(0, 1000) };
    await withPrincipal(pool, workerOf(step.orgId), (tx) => appendEvent(tx, step, 'reply_failed', payload));
    deps.logger?.warn({ runId: step.runId, answerSeq: step.answerSeq, status }, 'reply to the CRM thread failed');
    return 'failed';
  }

  return { sendReply };
}
