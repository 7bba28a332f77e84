/**
 * The agent's answer into the lead's CRM thread, exactly once per part: a ledger row is
 * committed before each send and marked sent after it. Neither CRM takes an idempotency key, so
 * a retry that finds a row attempted but unconfirmed (the CRM may have accepted before the
 * worker died) first reads the thread back for our own message and sends only if it is missing.
 * Kommo's `send_message` spends a monthly quota: sends are counted per connection from the
 * ledger, a warning is raised once a month at the configured share, and beyond the quota (or
 * where Kommo refuses the add-on) the part goes through the connection's Salesbot.
 * A 4xx ends as a `reply_failed` run event and flags the conversation for people; the
 * conversation goes on.
 */
import { ConnectionUnavailableError } from '../../integrations/crm/credentials.js';
import { CrmError } from '../../integrations/crm/http.js';
import { loadMessagingSettings, messengerSettings, type ConnectionMessagingSettings } from '../../integrations/crm/messaging/settings.js';
import { splitForChannel } from '../../integrations/crm/messaging/split.js';
import { replyTargetSchema, type CrmMessenger, type ReplyRoute, type ReplyTarget } from '../../integrations/crm/messaging/types.js';
import { autocommitAsPrincipal, withPrincipal } from '../../lib/db.js';
import { crmReplies, crmReplyQuotaWarnings } from '../../lib/metrics.js';
import { toActivityFailure } from '../activity-failure.js';
import type { RunStep } from './contract.js';
import type { ResolvedAgentRunDeps } from './deps.js';
import { appendEvent, runGone, workerOf } from './run-store.js';

/** The answer to send (event `answerSeq`); `seq` is where the first event this step writes goes. */
export interface SendReplyStep extends RunStep {
  answerSeq: number;
}

/**
 * What happened, and so how many run events were written from `seq` on: `failed` (reply_failed)
 * and `warned` (reply_quota_warning, the answer was sent) one each, `failed_warned` both.
 */
export type SendReplyOutcome = 'sent' | 'not_crm_bound' | 'failed' | 'warned' | 'failed_warned';

// Our clock and the CRM's may disagree a little: a read-back looks this far before the attempt.
const CLOCK_SKEW_MS = 60_000;

interface LedgerRow {
  part: number;
  status: 'attempted' | 'sent';
  route: ReplyRoute;
  attempted_at: string;
}

interface ReplyContext {
  thread_key: string | null;
  reply_target: unknown;
  answer: string | null;
  failed_recorded: boolean;
  failed_reason: string | null;
  failed_status: number | null;
  warned_recorded: boolean;
  ledger: LedgerRow[];
}

export function createSendReplyActivities(deps: ResolvedAgentRunDeps) {
  const { pool, credentials, events } = deps;

  async function sendReply(step: SendReplyStep): Promise<SendReplyOutcome> {
    const context = await loadContext(step);
    const connectionId = context.thread_key?.match(/^crm:([0-9a-f-]{36}):/)?.[1];
    const parsed = replyTargetSchema.safeParse(context.reply_target);
    // Conversations in the app, and CRM threads whose lead never named a thread we can reach.
    if (!connectionId || !parsed.success || context.answer === null || context.answer.trim() === '') return 'not_crm_bound';
    const target = parsed.data;
    // A retry of a step whose events were written before the worker died (or whose telling
    // people failed): same outcome again, and people are told (once: the event id is the cause).
    let warned = context.warned_recorded;
    if (context.failed_recorded) {
      await tellPeople(step, target, context.failed_reason ?? '', context.failed_status);
      return warned ? 'failed_warned' : 'failed';
    }
    const ref = { orgId: step.orgId, connectionId };
    if (!credentials) return fail(step, target, 'CRM credentials are not configured on this worker', null, false);

    try {
      const settings = await withPrincipal(pool, workerOf(step.orgId), (tx) => loadMessagingSettings(tx, step.orgId, connectionId));
      const { adapter } = await credentials.open(ref);
      const messenger = adapter.messenger(messengerSettings(settings));
      const parts = splitForChannel(context.answer, messenger.maxChars(target));
      for (const [part, text] of parts.entries()) {
        const recorded = context.ledger.find((row) => row.part === part);
        if (recorded?.status === 'sent') continue;
        let route: ReplyRoute;
        if (recorded) {
          route = recorded.route;
          const since = new Date(new Date(recorded.attempted_at).getTime() - CLOCK_SKEW_MS);
          const earlier = await messenger.findSent(target, text, since, route);
          if (earlier) {
            await markSent(step, part, earlier.externalId);
            continue;
          }
        } else {
          route = await firstRoute(step.orgId, connectionId, target, settings);
          await autocommitAsPrincipal(
            pool,
            workerOf(step.orgId),
            `insert into public.crm_reply_sends (org_id, run_id, answer_seq, part, route) values ($1, $2, $3, $4, $5)
             on conflict (run_id, answer_seq, part) do nothing`,
            [step.orgId, step.runId, step.answerSeq, part, route],
          );
        }
        const sent = await sendPart(step, part, messenger, target, text, route, settings);
        await markSent(step, part, sent.externalId);
        crmReplies.inc({ provider: target.provider, route: sent.route, outcome: 'sent' });
        if (sent.route === 'kommo_talk' && !warned) warned = await warnIfQuotaLow(step, connectionId, settings);
      }
      return warned ? 'warned' : 'sent';
    } catch (err) {
      if (err instanceof CrmError && !err.retryable) return fail(step, target, err.message, err.details.status ?? null, warned);
      if (err instanceof ConnectionUnavailableError) return fail(step, target, err.message, null, warned);
      throw toActivityFailure(err);
    }
  }

  /** Kommo goes straight to the Salesbot once this month's counted sends reach the quota. */
  async function firstRoute(orgId: string, connectionId: string, target: ReplyTarget, settings: ConnectionMessagingSettings): Promise<ReplyRoute> {
    if (target.provider === 'hubspot') return 'hubspot_thread';
    if (settings.kommoMonthlyQuota === null || !settings.kommoSalesbot) return 'kommo_talk';
    return (await sentThisMonth(orgId, connectionId)) >= settings.kommoMonthlyQuota ? 'kommo_salesbot' : 'kommo_talk';
  }

  /**
   * One part through its route. Kommo answering `send_message` with 402 (the account's quota is
   * spent, whatever we counted) or 403 (no add-on on this plan or integration) is not the end:
   * the ledger row moves to the Salesbot route first (so a crash after the bot's send reads the
   * thread back for the bot's message), then the bot sends it.
   */
  async function sendPart(step: SendReplyStep, part: number, messenger: CrmMessenger, target: ReplyTarget, text: string, route: ReplyRoute, settings: ConnectionMessagingSettings) {
    try {
      return await messenger.send(target, text, route);
    } catch (err) {
      const refusedForPlan = err instanceof CrmError && (err.details.status === 402 || err.details.status === 403);
      if (route !== 'kommo_talk' || !refusedForPlan || !settings.kommoSalesbot) throw err;
      deps.logger?.warn({ runId: step.runId, status: (err as CrmError).details.status }, 'Kommo refused send_message; replying through the Salesbot');
      await autocommitAsPrincipal(
        pool,
        workerOf(step.orgId),
        `update public.crm_reply_sends set route = 'kommo_salesbot', attempted_at = now() where run_id = $1 and org_id = $2 and answer_seq = $3 and part = $4`,
        [step.runId, step.orgId, step.answerSeq, part],
      );
      return messenger.send(target, text, 'kommo_salesbot');
    }
  }

  /** The connection's `send_message` replies confirmed sent in this calendar month (UTC). */
  async function sentThisMonth(orgId: string, connectionId: string): Promise<number> {
    const { rows } = await autocommitAsPrincipal<{ n: number }>(
      pool,
      workerOf(orgId),
      `select count(*)::int as n
         from public.crm_reply_sends s
         join public.agent_runs r on r.id = s.run_id and r.org_id = s.org_id
        where s.org_id = $1 and s.route = 'kommo_talk' and s.status = 'sent'
          and s.sent_at >= date_trunc('month', now() at time zone 'utc') at time zone 'utc'
          and r.thread_key like $2`,
      [orgId, `crm:${connectionId}:%`],
    );
    return rows[0]?.n ?? 0;
  }

  /**
   * Once a month per connection, when the counted sends reach the warning share of the quota: a
   * `reply_quota_warning` event on the run that crossed it, a log line and a metric. The month is
   * claimed on the settings row, so concurrent conversations warn once.
   */
  async function warnIfQuotaLow(step: SendReplyStep, connectionId: string, settings: ConnectionMessagingSettings): Promise<boolean> {
    const quota = settings.kommoMonthlyQuota;
    if (quota === null) return false;
    const sent = await sentThisMonth(step.orgId, connectionId);
    if (sent < Math.ceil((quota * settings.quotaWarnPercent) / 100)) return false;
    return withPrincipal(pool, workerOf(step.orgId), async (tx) => {
      const claimed = await tx.query(
        `update public.crm_messaging_settings set quota_warned_month = (date_trunc('month', now() at time zone 'utc'))::date
          where org_id = $1 and connection_id = $2 and quota_warned_month is distinct from (date_trunc('month', now() at time zone 'utc'))::date`,
        [step.orgId, connectionId],
      );
      if (claimed.rowCount !== 1) return false;
      const payload = { connectionId, provider: 'kommo', sent, quota, remaining: Math.max(0, quota - sent), fallback: settings.kommoSalesbot ? 'salesbot' : null };
      await appendEvent(tx, step, 'reply_quota_warning', payload);
      crmReplyQuotaWarnings.inc({ provider: 'kommo' });
      deps.logger?.warn({ runId: step.runId, connectionId, sent, quota }, 'Kommo send_message quota is running out');
      return true;
    });
  }

  async function loadContext(step: SendReplyStep): Promise<ReplyContext> {
    const { rows } = await autocommitAsPrincipal<ReplyContext>(
      pool,
      workerOf(step.orgId),
      `select r.thread_key, r.reply_target,
              (select e.payload->>'content' from public.run_events e
                where e.run_id = r.id and e.org_id = r.org_id and e.seq = $3 and e.type = 'llm.completed') as answer,
              exists (select 1 from public.run_events e where e.run_id = r.id and e.org_id = r.org_id and e.seq in ($4, $4 + 1) and e.type = 'reply_failed') as failed_recorded,
              exists (select 1 from public.run_events e where e.run_id = r.id and e.org_id = r.org_id and e.seq = $4 and e.type = 'reply_quota_warning') as warned_recorded,
              (select e.payload->>'reason' from public.run_events e where e.run_id = r.id and e.org_id = r.org_id and e.seq in ($4, $4 + 1) and e.type = 'reply_failed') as failed_reason,
              (select (e.payload->>'status')::int from public.run_events e where e.run_id = r.id and e.org_id = r.org_id and e.seq in ($4, $4 + 1) and e.type = 'reply_failed') as failed_status,
              coalesce((select json_agg(json_build_object('part', s.part, 'status', s.status, 'route', s.route, 'attempted_at', s.attempted_at))
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

  /**
   * The CRM refused the reply for good: a `reply_failed` event and the conversation flagged for
   * people (run_attention, kept until a member acknowledges it), in one transaction.
   */
  async function fail(step: SendReplyStep, target: ReplyTarget, reason: string, status: number | null, warned: boolean): Promise<'failed' | 'failed_warned'> {
    const payload = { answerSeq: step.answerSeq, provider: target.provider, status, reason: reason.slice(0, 1000) };
    await withPrincipal(pool, workerOf(step.orgId), async (tx) => {
      await appendEvent(tx, { ...step, seq: step.seq + (warned ? 1 : 0) }, 'reply_failed', payload);
      await tx.query(
        `insert into public.run_attention (org_id, run_id, reason, detail) values ($1, $2, 'reply_failed', $3)
         on conflict (run_id) do update set reason = excluded.reason, detail = excluded.detail, updated_at = now()`,
        [step.orgId, step.runId, payload.reason],
      );
    });
    crmReplies.inc({ provider: target.provider, route: target.provider === 'kommo' ? 'kommo_talk' : 'hubspot_thread', outcome: 'failed' });
    deps.logger?.warn({ runId: step.runId, answerSeq: step.answerSeq, status }, 'reply to the CRM thread failed; the conversation needs a person');
    await tellPeople(step, target, payload.reason, status);
    return warned ? 'failed_warned' : 'failed';
  }

  /** `reply.failed` to the org's webhooks and live feed, after the failure committed; keyed by the answer. */
  async function tellPeople(step: SendReplyStep, target: ReplyTarget, reason: string, status: number | null): Promise<void> {
    if (!events) return;
    await events.publish({
      orgId: step.orgId,
      type: 'reply.failed',
      cause: `${step.runId}:${step.answerSeq}`,
      data: { runId: step.runId, answerSeq: step.answerSeq, provider: target.provider, status, reason },
    });
  }

  return { sendReply };
}
