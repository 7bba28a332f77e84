import type pg from 'pg';
import { ORG_EVENTS_CHANNEL } from '../../lib/org-events.js';
import { CONVERSATION_ACTIVITY_CHANNEL, RUN_DELTAS_CHANNEL, RUN_EVENTS_CHANNEL, type RunDelta } from '../../lib/run-channels.js';

type Listener = { onEvent(seq: number): void; onDelta(delta: RunDelta): void; onClose(): void };
type OrgListener = { onEvent(seq: number): void; onClose(): void };
type ConversationListener = { onActivity(runId: string): void; onClose(): void };

/**
 * One LISTEN connection per API process, fanned out to the SSE streams of each run. Durable
 * events arrive as `runId:seq` (a trigger on run_events, at commit); live token deltas as JSON
 * from the workers (activities/deltas.ts; the contract is lib/run-channels.ts). Readers fetch durable events through their own
 * RLS-scoped query; a notification only tells them to look. The org-wide feed of org events
 * (`orgId:seq`, a trigger on org_events) and the conversations lists' hints (`orgId:runId`,
 * triggers on agent_runs and run_attention) share the same connection.
 */
export class RunStreamHub {
  readonly #listeners = new Map<string, Set<Listener>>();
  readonly #orgListeners = new Map<string, Set<OrgListener>>();
  readonly #conversationListeners = new Map<string, Set<ConversationListener>>();
  #client: Promise<pg.PoolClient> | undefined;
  #closed = false;

  constructor(private readonly pool: pg.Pool) {}

  async subscribe(runId: string, listener: Listener): Promise<() => void> {
    if (this.#closed) throw new Error('the server is shutting down');
    await this.#connect();
    let set = this.#listeners.get(runId);
    if (!set) this.#listeners.set(runId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.#listeners.delete(runId);
    };
  }

  /** Follows the org events of `orgId` (the org-wide feed). */
  async subscribeOrg(orgId: string, listener: OrgListener): Promise<() => void> {
    if (this.#closed) throw new Error('the server is shutting down');
    await this.#connect();
    let set = this.#orgListeners.get(orgId);
    if (!set) this.#orgListeners.set(orgId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.#orgListeners.delete(orgId);
    };
  }

  /** Follows changes to the conversations of `orgId` as its list shows them (hints, not data). */
  async subscribeConversations(orgId: string, listener: ConversationListener): Promise<() => void> {
    if (this.#closed) throw new Error('the server is shutting down');
    await this.#connect();
    let set = this.#conversationListeners.get(orgId);
    if (!set) this.#conversationListeners.set(orgId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.#conversationListeners.delete(orgId);
    };
  }

  #connect(): Promise<pg.PoolClient> {
    this.#client ??= (async () => {
      const client = await this.pool.connect();
      client.on('notification', (message) => this.#dispatch(message.channel, message.payload ?? ''));
      client.on('error', () => {
        // The connection died (Postgres restart): forget it so the next subscriber reconnects.
        // Open streams keep working from their own queries and reconnecting clients resume by Last-Event-ID.
        this.#client = undefined;
        client.release(true);
      });
      await client.query(`listen ${RUN_EVENTS_CHANNEL}`);
      await client.query(`listen ${RUN_DELTAS_CHANNEL}`);
      await client.query(`listen ${ORG_EVENTS_CHANNEL}`);
      await client.query(`listen ${CONVERSATION_ACTIVITY_CHANNEL}`);
      return client;
    })();
    const pending = this.#client;
    pending.catch(() => {
      if (this.#client === pending) this.#client = undefined;
    });
    return pending;
  }

  #dispatch(channel: string, payload: string): void {
    if (channel === ORG_EVENTS_CHANNEL) {
      const [orgId, seq] = payload.split(':');
      for (const listener of this.#orgListeners.get(orgId ?? '') ?? []) listener.onEvent(Number(seq));
    } else if (channel === CONVERSATION_ACTIVITY_CHANNEL) {
      const [orgId, runId] = payload.split(':');
      for (const listener of this.#conversationListeners.get(orgId ?? '') ?? []) listener.onActivity(runId ?? '');
    } else if (channel === RUN_EVENTS_CHANNEL) {
      const [runId, seq] = payload.split(':');
      for (const listener of this.#listeners.get(runId ?? '') ?? []) listener.onEvent(Number(seq));
    } else if (channel === RUN_DELTAS_CHANNEL) {
      let delta: RunDelta;
      try {
        delta = JSON.parse(payload) as RunDelta;
      } catch {
        return;
      }
      for (const listener of this.#listeners.get(delta.runId) ?? []) listener.onDelta(delta);
    }
  }

  /** Ends every open stream (clients resume with Last-Event-ID elsewhere) and releases the LISTEN connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const listeners of [...this.#listeners.values()]) for (const listener of [...listeners]) listener.onClose();
    for (const listeners of [...this.#orgListeners.values()]) for (const listener of [...listeners]) listener.onClose();
    for (const listeners of [...this.#conversationListeners.values()]) for (const listener of [...listeners]) listener.onClose();
    this.#listeners.clear();
    this.#orgListeners.clear();
    this.#conversationListeners.clear();
    const client = await this.#client?.catch(() => undefined);
    if (client) {
      await client.query('unlisten *').catch(() => undefined);
      client.release();
    }
  }
}
