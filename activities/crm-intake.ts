/**
 * Activities of `crmIntake`: the work a CRM webhook delivery asks for, done after the API has
 * recorded it and answered 200. One activity drains a batch of the connection's open deliveries
 * in order: re-reads each changed record through the CRM API (never trusting the payload),
 * upserts it, evaluates the agents' triggers, and starts runs or posts the lead's message into
 * its conversation. Every step is idempotent, so a retry after a crash repeats nothing:
 * records upsert by natural key, a trigger firing is claimed per delivery, runs carry a
 * delivery-derived idempotency key, messages a delivery-derived source key, and the Temporal
 * side is keyed by workflow id and update id.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import type pg from 'pg';
import type { CredentialStore } from '../integrations/crm/credentials.js';
import { CrmError } from '../integrations/crm/http.js';
import { tombstoneRecords, upsertRecords } from '../integrations/crm/record-store.js';
import type { CrmAdapter, CrmEntityType, CrmMessageRef, CrmProvider } from '../integrations/crm/types.js';
import { loadMessagingSettings } from '../integrations/crm/messaging/settings.js';
import type { ReplyTarget } from '../integrations/crm/messaging/types.js';
import type { AgentStatus } from '../lib/agent-rules.js';
import { DEFAULT_TRIGGER_COOLDOWN_MINUTES, leadThreadKey, type AgentTrigger } from '../lib/agent-triggers.js';
import { sha256Hex } from '../lib/crypto.js';
import { withPrincipal } from '../lib/db.js';
import type { Logger } from '../lib/logger.js';
import { toActivityFailure } from './activity-failure.js';

/** What a delivery row keeps besides its columns: what the CRM will not tell us again. */
export interface DeliveryPayload {
  message?: { text: string; talk?: { talkId: string; origin: string | null } };
  messageRef?: CrmMessageRef;
  stageChange?: boolean;
  outgoing?: { messageId: string | null };
}

/** A committed agent_runs row, as the Temporal side needs it. */
export interface RunRef {
  orgId: string;
  agentId: string;
  runId: string;
}

/**
 * The Temporal side of starting runs, given by the worker process (which may import workflow
 * definitions; activities may not). Both calls are idempotent: by workflow id and by update id.
 */
export interface AgentRunHandoff {
  /** Starts the workflow of a committed run row (a triggered run). */
  startRun(run: RunRef): Promise<void>;
  /**
   * Delivers a committed conversation message to its conversation workflow (update-with-start).
   * Answers 'busy' when the agent refused it for now (its busy policy is `reject`).
   */
  deliverMessage(run: RunRef, messageId: string): Promise<'accepted' | 'busy'>;
  /**
   * Hands an open conversation to people (a salesperson wrote in the lead's thread), through its
   * workflow; `key` names the cause, so a retry hands off once. Nothing when it has ended.
   */
  requestHandoff(run: RunRef, request: { reason: 'salesperson_replied'; key: string }): Promise<void>;
}

export interface CrmIntakeActivityDeps {
  pool: pg.Pool;
  credentials: CredentialStore;
  handoff: AgentRunHandoff;
  logger: Logger;
  /** Deliveries per activity (default 25): the workflow calls again while some remain. */
  batchSize?: number;
}

interface DeliveryRow {
  dedupe_key: string;
  kind: string;
  object_type: CrmEntityType;
  external_id: string;
  change: 'upsert' | 'delete';
  payload: DeliveryPayload;
}

const worker = (orgId: string) => ({ kind: 'worker', orgId }) as const;

/** CRM failures that concern one event (its record was rejected), not the connection or the CRM's health. */
const eventScoped = (err: unknown) => err instanceof CrmError && !err.retryable && err.kind !== 'auth' && err.kind !== 'forbidden';

/** How long to wait before a second read confirms that a record reading back 404 is gone. */
const NOT_FOUND_RECHECK_MS = 1_000;

export function createCrmIntakeActivities(deps: CrmIntakeActivityDeps) {
  const { pool, credentials } = deps;
  const batchSize = deps.batchSize ?? 25;

  /**
   * Processes up to a batch of the connection's open deliveries, oldest first, marking each
   * processed as soon as its effects are done (so a retry resumes after it). Record changes of
   * the batch come first, one CRM read per record, then messages in order, so a message sees the
   * lead's stage as of its batch.
   */
  async function processPendingDeliveries(ref: { orgId: string; connectionId: string }): Promise<{ processed: number; remaining: number }> {
    const { rows } = await withPrincipal(pool, worker(ref.orgId), (tx) =>
      tx.query<DeliveryRow>(
        `select dedupe_key, kind, object_type, external_id, change, payload from public.crm_webhook_deliveries
          where connection_id = $1 and org_id = $2 and processed_at is null order by seq limit $3`,
        [ref.connectionId, ref.orgId, batchSize + 1],
      ),
    );
    const batch = rows.slice(0, batchSize);
    if (batch.length === 0) return { processed: 0, remaining: 0 };
    // Heartbeats while the batch runs (a hand-over may wait on Temporal for a while), so a dead
    // worker's batch moves on after the heartbeat timeout and a live one is never retried in parallel.
    let ctx: Context | undefined;
    try {
      ctx = Context.current();
    } catch {
      ctx = undefined;
    }
    ctx?.heartbeat();
    const beat = ctx ? setInterval(() => ctx.heartbeat(), 1_000) : undefined;
    try {
      return await processBatch(ref, batch, rows.length - batch.length);
    } finally {
      clearInterval(beat);
    }
  }

  async function processBatch(ref: { orgId: string; connectionId: string }, batch: DeliveryRow[], remaining: number): Promise<{ processed: number; remaining: number }> {
    let adapter: CrmAdapter;
    let provider: CrmProvider;
    try {
      ({ adapter } = await credentials.open(ref));
      provider = adapter.provider;
    } catch (err) {
      throw toActivityFailure(err);
    }

    try {
      const records = new Map<string, DeliveryRow[]>();
      for (const row of batch) {
        if (row.payload.message || row.payload.messageRef || row.payload.outgoing) continue;
        const key = `${row.object_type}:${row.external_id}`;
        records.set(key, [...(records.get(key) ?? []), row]);
      }
      for (const group of records.values()) {
        await ingestRecordChange(ref, provider, adapter, group);
      }
      for (const row of batch) {
        if (row.payload.outgoing) await ingestOutgoing(ref, row.dedupe_key, row.external_id, row.payload.outgoing.messageId);
        else if (row.payload.message || row.payload.messageRef) await ingestMessage(ref, adapter, row);
      }
    } catch (err) {
      if (err instanceof ApplicationFailure) throw err;
      throw toActivityFailure(err);
    }
    return { processed: batch.length, remaining };
  }

  async function markProcessed(ref: { orgId: string; connectionId: string }, keys: string[], error: string | null = null): Promise<void> {
    await withPrincipal(pool, worker(ref.orgId), (tx) =>
      tx.query(`update public.crm_webhook_deliveries set processed_at = now(), error = $3 where connection_id = $1 and dedupe_key = any($2::text[])`, [
        ref.connectionId,
        keys,
        error,
      ]),
    );
  }

  /** A record changed: read it once, upsert or tombstone it, and start runs if a deal entered a stage. */
  async function ingestRecordChange(ref: { orgId: string; connectionId: string }, provider: CrmProvider, adapter: CrmAdapter, group: DeliveryRow[]) {
    const last = group.at(-1)!;
    const keys = group.map((r) => r.dedupe_key);
    let record;
    try {
      record = last.change === 'delete' ? null : await adapter.getRecord(last.object_type, last.external_id);
      if (record === null && last.change !== 'delete') {
        // A record that reads back 404 right after an event about it is usually not replicated
        // yet (HubSpot answers 404 for a just-created object for a moment): it is tombstoned only
        // when a second read, a moment later, confirms it is gone.
        await new Promise((resolve) => setTimeout(resolve, NOT_FOUND_RECHECK_MS));
        record = await adapter.getRecord(last.object_type, last.external_id);
      }
    } catch (err) {
      // The CRM rejected this read (not the connection, not its health): retrying cannot help,
      // so the event is closed with the reason rather than holding the connection's queue.
      if (!eventScoped(err)) throw err;
      await markProcessed(ref, keys, (err as Error).message.slice(0, 1000));
      return;
    }
    const scope = { orgId: ref.orgId, connectionId: ref.connectionId };
    const entered = await withPrincipal(pool, worker(ref.orgId), async (tx) => {
      const before = await tx.query<{ stage_id: string | null }>(
        `select stage_id from public.crm_records where connection_id = $1 and object_type = $2 and external_id = $3 and deleted_at is null`,
        [ref.connectionId, last.object_type, last.external_id],
      );
      if (record) await upsertRecords(tx, scope, last.object_type, [record], null);
      else await tombstoneRecords(tx, scope, last.object_type, [last.external_id]);
      // "Entered a stage": the provider said the stage changed, or the stage we knew differs.
      const moved = group.some((e) => e.payload.stageChange) || before.rows[0]?.stage_id !== record?.stageId;
      return record && record.objectType === 'deals' && record.stageId && moved ? record : null;
    });
    // Effects before the delivery counts as processed: a crash here leaves it open, and the retry
    // finds the firing it claimed and the runs it created by their delivery-derived keys.
    if (entered) await startTriggeredRuns(ref, provider, last.dedupe_key, entered);
    await markProcessed(ref, keys);
  }

  async function triggeredAgents(orgId: string, connectionId: string, match: AgentTrigger): Promise<{ id: string; triggers: AgentTrigger[]; status: AgentStatus; scoped: boolean }[]> {
    return withPrincipal(pool, worker(orgId), async (tx) => {
      const { rows } = await tx.query<{ id: string; triggers: AgentTrigger[]; status: AgentStatus; scoped: boolean }>(
        `select id, triggers, status, reply_stages is not null as scoped from public.agents where org_id = $1 and crm_connection_id = $2 and triggers @> $3::jsonb order by id`,
        [orgId, connectionId, JSON.stringify([match])],
      );
      return rows;
    });
  }

  /**
   * One run per agent whose `lead_stage_entered` trigger names the record's stage (and pipeline,
   * if set), unless that trigger already fired for this lead and stage within its cooldown.
   */
  async function startTriggeredRuns(
    ref: { orgId: string; connectionId: string },
    provider: CrmProvider,
    dedupeKey: string,
    record: { externalId: string; stageId: string | null; pipelineId: string | null },
  ) {
    const agents = await triggeredAgents(ref.orgId, ref.connectionId, { event: 'lead_stage_entered', stageId: record.stageId! });
    const deliveryId = sha256Hex(`${ref.connectionId}:${dedupeKey}`).slice(0, 32);
    for (const agent of agents) {
      // A paused agent starts nothing.
      if (agent.status === 'paused') continue;
      const fitting = agent.triggers.filter(
        (t): t is Extract<AgentTrigger, { event: 'lead_stage_entered' }> =>
          t.event === 'lead_stage_entered' && t.stageId === record.stageId && (t.pipelineId === undefined || t.pipelineId === record.pipelineId),
      );
      if (fitting.length === 0) continue;
      // Several fitting triggers (with and without a pipeline): the shortest cooldown decides.
      const cooldownMinutes = Math.min(...fitting.map((t) => t.cooldownMinutes ?? DEFAULT_TRIGGER_COOLDOWN_MINUTES));
      if (!(await claimFiring(ref, agent.id, record.externalId, record.stageId!, deliveryId, cooldownMinutes))) continue;
      const pipeline = record.pipelineId ? ` of pipeline ${record.pipelineId}` : '';
      const runId = await createTriggeredRun(
        ref.orgId,
        agent.id,
        `CRM ${provider} webhook: lead ${record.externalId} (connection ${ref.connectionId}) entered stage ${record.stageId}${pipeline}.`,
        `webhook:${deliveryId}:${agent.id}`,
      );
      await deps.handoff.startRun({ orgId: ref.orgId, agentId: agent.id, runId });
      // Temporal accepted it: the dispatcher's sweep (api/services/run-dispatch.ts) may skip it.
      await withPrincipal(pool, worker(ref.orgId), (tx) =>
        tx.query(`update public.agent_runs set dispatched_at = now() where id = $1 and org_id = $2 and dispatched_at is null`, [runId, ref.orgId]),
      );
    }
  }

  /** The run row, once per idempotency key: a retry finds the row its earlier attempt committed. */
  async function createTriggeredRun(orgId: string, agentId: string, input: string, idempotencyKey: string): Promise<string> {
    return withPrincipal(pool, worker(orgId), async (tx) => {
      const inserted = await tx.query<{ id: string }>(
        `insert into public.agent_runs (org_id, agent_id, input, idempotency_key)
         select $1, a.id, $3, $4 from public.agents a where a.id = $2 and a.org_id = $1
         on conflict (org_id, idempotency_key) where idempotency_key is not null do nothing
         returning id`,
        [orgId, agentId, input, idempotencyKey],
      );
      if (inserted.rows[0]) return inserted.rows[0].id;
      const { rows } = await tx.query<{ id: string }>(`select id from public.agent_runs where org_id = $1 and idempotency_key = $2`, [orgId, idempotencyKey]);
      if (!rows[0]) throw ApplicationFailure.create({ message: `agent ${agentId} is gone`, type: 'AgentGone', nonRetryable: false });
      return rows[0].id;
    });
  }

  /**
   * Claims the trigger's firing for (agent, lead, stage): true when none happened within the
   * cooldown, or when this same delivery made it (its retry must still start the run, which the
   * run's idempotency key then dedupes). One statement, so concurrent deliveries claim once.
   */
  async function claimFiring(ref: { orgId: string; connectionId: string }, agentId: string, leadExternalId: string, stageId: string, deliveryId: string, cooldownMinutes: number) {
    const { rowCount } = await withPrincipal(pool, worker(ref.orgId), (tx) =>
      tx.query(
        `insert into public.agent_trigger_firings as f (org_id, agent_id, connection_id, lead_external_id, stage_id, delivery_id)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (agent_id, connection_id, lead_external_id, stage_id) do update
           set delivery_id = excluded.delivery_id,
               fired_at = case when f.delivery_id = excluded.delivery_id then f.fired_at else now() end
           where f.delivery_id = excluded.delivery_id or f.fired_at <= now() - make_interval(mins => $7)`,
        [ref.orgId, agentId, ref.connectionId, leadExternalId, stageId, deliveryId, cooldownMinutes],
      ),
    );
    return rowCount === 1;
  }

  /**
   * The lead's incoming message, into the lead's conversation with each agent triggered by
   * incoming messages. Kommo delivers the text about a lead; HubSpot only names the message, whose
   * text and contact are read through the API, and only when some agent listens (each read
   * spends the connection's rate budget). A HubSpot message a person sent to the contact is an
   * outgoing one (Kommo's arrive as their own deliveries).
   */
  async function ingestMessage(ref: { orgId: string; connectionId: string }, adapter: CrmAdapter, row: DeliveryRow) {
    const agents = await triggeredAgents(ref.orgId, ref.connectionId, { event: 'incoming_message' });
    let incoming: { leadExternalId: string; text: string; replyTarget: ReplyTarget | null } | null = null;
    if (agents.length > 0) {
      if (row.payload.message) {
        const talk = row.payload.message.talk;
        incoming = {
          leadExternalId: row.external_id,
          text: row.payload.message.text,
          replyTarget: talk ? { provider: 'kommo', talkId: talk.talkId, leadId: row.external_id, origin: talk.origin } : null,
        };
      } else {
        if (!adapter.getConversationMessage) throw ApplicationFailure.nonRetryable(`The ${adapter.provider} adapter cannot read conversation messages`, 'CrmRequestRejected');
        let read;
        try {
          read = await adapter.getConversationMessage(row.payload.messageRef!);
        } catch (err) {
          if (!eventScoped(err)) throw err;
          await markProcessed(ref, [row.dedupe_key], (err as Error).message.slice(0, 1000));
          return;
        }
        if (read?.direction === 'outgoing') {
          // A person of the portal wrote to the contact: the dedicated user the agent posts as
          // is us (our reply's echo), anyone else is a salesperson taking over.
          const settings = await withPrincipal(pool, worker(ref.orgId), (tx) => loadMessagingSettings(tx, ref.orgId, ref.connectionId));
          if (read.senderActorId === settings.hubspotSenderActorId) await markProcessed(ref, [row.dedupe_key]);
          else await ingestOutgoing(ref, row.dedupe_key, read.contactId, read.messageId);
          return;
        }
        incoming = read && { leadExternalId: read.contactId, text: read.text, replyTarget: read.replyTarget };
      }
    }
    if (incoming && row.payload.message && agents.some((a) => a.scoped)) await knowLead(ref, adapter, row.external_id);
    if (incoming) {
      const deliveryId = sha256Hex(`${ref.connectionId}:${row.dedupe_key}`).slice(0, 32);
      for (const agent of agents) {
        // A paused agent starts no conversation; its open one records the message (held by its rules).
        const posted = await recordConversationMessage(ref.orgId, agent.id, leadThreadKey(ref.connectionId, incoming.leadExternalId), incoming.text, `webhook:${deliveryId}:${agent.id}`, incoming.replyTarget, agent.status === 'active');
        if (!posted) continue;
        const outcome = await deps.handoff.deliverMessage({ orgId: ref.orgId, agentId: agent.id, runId: posted.runId }, posted.messageId);
        if (outcome === 'busy') {
          // The agent refuses messages while it answers (busy policy `reject`): the lead's message
          // is kept and offered again shortly, never dropped.
          throw ApplicationFailure.create({ message: 'the agent is still answering the previous message', type: 'AgentBusy', nextRetryDelay: '5 seconds' });
        }
      }
    }
    await markProcessed(ref, [row.dedupe_key]);
  }

  /**
   * Stage scoping needs the lead's stage: a Kommo lead the connection has not synced (a first
   * message) is read once and stored, so the conversation's rules see where it is. Later moves
   * arrive as `leads[status]` deliveries.
   */
  async function knowLead(ref: { orgId: string; connectionId: string }, adapter: CrmAdapter, leadId: string) {
    const known = await withPrincipal(pool, worker(ref.orgId), (tx) =>
      tx.query(`select 1 from public.crm_records where connection_id = $1 and object_type = 'deals' and external_id = $2 and deleted_at is null`, [ref.connectionId, leadId]),
    );
    if (known.rowCount === 1) return;
    let record;
    try {
      record = await adapter.getRecord('deals', leadId);
    } catch (err) {
      // A lead the CRM will not show stays unknown, which the rules treat as outside the stages.
      if (eventScoped(err)) return;
      throw err;
    }
    if (!record) return;
    await withPrincipal(pool, worker(ref.orgId), (tx) => upsertRecords(tx, { orgId: ref.orgId, connectionId: ref.connectionId }, 'deals', [record], null));
  }

  /**
   * An outgoing message in the lead's thread. Ours (a reply we sent, or one being sent right now,
   * whose id we may not have recorded yet) changes nothing; anyone else's is a salesperson taking
   * over, which hands every open conversation of the thread to people. Kommo names the lead;
   * HubSpot the contact (read from the message's thread).
   */
  async function ingestOutgoing(ref: { orgId: string; connectionId: string }, dedupeKey: string, leadExternalId: string, messageId: string | null) {
    const threadKey = leadThreadKey(ref.connectionId, leadExternalId);
    const open = await withPrincipal(pool, worker(ref.orgId), async (tx) => {
      const ours = await tx.query(
        `select 1 from public.crm_reply_sends s join public.agent_runs r on r.id = s.run_id and r.org_id = s.org_id
          where r.org_id = $1 and r.thread_key = $2
            and (s.external_id = $3 or (s.status = 'attempted' and s.attempted_at > now() - interval '2 minutes'))
          limit 1`,
        [ref.orgId, threadKey, messageId],
      );
      if (ours.rowCount === 1) return [];
      const { rows } = await tx.query<{ id: string; agent_id: string }>(
        `select id, agent_id from public.agent_runs where org_id = $1 and thread_key = $2 and status not in ('completed', 'failed', 'cancelled') order by id`,
        [ref.orgId, threadKey],
      );
      return rows;
    });
    const deliveryId = sha256Hex(`${ref.connectionId}:${dedupeKey}`).slice(0, 32);
    for (const run of open) {
      await deps.handoff.requestHandoff({ orgId: ref.orgId, agentId: run.agent_id, runId: run.id }, { reason: 'salesperson_replied', key: `salesperson:${deliveryId}` });
    }
    await markProcessed(ref, [dedupeKey]);
  }

  /**
   * The message row in the lead's open conversation (created when there is none), once per
   * source key. Null when an earlier attempt wrote it into a conversation that has ended since.
   */
  async function recordConversationMessage(
    orgId: string,
    agentId: string,
    threadKey: string,
    content: string,
    sourceKey: string,
    replyTarget: ReplyTarget | null,
    mayStart: boolean,
  ): Promise<{ runId: string; messageId: string } | null> {
    return withPrincipal(pool, worker(orgId), async (tx) => {
      const earlier = await tx.query<{ run_id: string; message_id: string; status: string }>(
        `select m.run_id, m.id as message_id, r.status from public.conversation_messages m join public.agent_runs r on r.id = m.run_id and r.org_id = m.org_id
          where m.org_id = $1 and m.source_key = $2`,
        [orgId, sourceKey],
      );
      if (earlier.rows[0]) {
        const e = earlier.rows[0];
        return ['completed', 'failed', 'cancelled'].includes(e.status) ? null : { runId: e.run_id, messageId: e.message_id };
      }
      const open = `thread_key is not null and status not in ('completed', 'failed', 'cancelled')`;
      const inserted = mayStart
        ? await tx.query<{ id: string }>(
            `insert into public.agent_runs (org_id, agent_id, input, thread_key)
             select $1, a.id, '', $3 from public.agents a where a.id = $2 and a.org_id = $1
             on conflict (org_id, agent_id, thread_key) where ${open} do nothing
             returning id`,
            [orgId, agentId, threadKey],
          )
        : { rows: [] as { id: string }[] };
      const runId =
        inserted.rows[0]?.id ??
        (await tx.query<{ id: string }>(`select id from public.agent_runs where org_id = $1 and agent_id = $2 and thread_key = $3 and ${open}`, [orgId, agentId, threadKey])).rows[0]?.id;
      if (!runId) return null;
      // Replies go where the lead last wrote from.
      if (replyTarget) await tx.query(`update public.agent_runs set reply_target = $3 where id = $1 and org_id = $2`, [runId, orgId, replyTarget]);
      const message = await tx.query<{ id: string }>(
        `insert into public.conversation_messages (org_id, run_id, author, content, source, source_key)
         values ($1, $2, null, $3, 'crm_webhook', $4) returning id`,
        [orgId, runId, content, sourceKey],
      );
      return { runId, messageId: message.rows[0]!.id };
    });
  }

  return { processPendingDeliveries };
}

export type CrmIntakeActivities = ReturnType<typeof createCrmIntakeActivities>;
