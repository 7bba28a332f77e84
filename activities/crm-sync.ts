/**
 * Activities of `crmSync`. Page data never passes through Temporal: `syncPage` fetches one page
 * AND upserts it in Postgres, and stores the next cursor in the same transaction as the records
 * (public.crm_sync_state), so a crashed worker resumes at the page after the last committed one.
 * Arguments and results are ids, modes and counts.
 */
import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import type pg from 'pg';
import { withPrincipal, type Tx } from '../lib/db.js';
import type { Logger } from '../lib/logger.js';
import type { CredentialStore } from '../integrations/crm/credentials.js';
import { tombstoneRecords, tombstoneUnseen, upsertRecords } from '../integrations/crm/record-store.js';
import { crmObjectTypes, type CrmDeletionsPage, type CrmObjectType, type CrmPage } from '../integrations/crm/types.js';
import { CrmFailureTypes } from './crm-failure-types.js';
import { toActivityFailure } from './activity-failure.js';
import { crmRecordsSynced } from '../lib/metrics.js';

export type CrmSyncMode = 'incremental' | 'full';

export interface SyncRunRef {
  orgId: string;
  connectionId: string;
  syncRunId: string;
}

export interface BeginSyncInput extends SyncRunRef {
  mode: CrmSyncMode;
  trigger: 'manual' | 'schedule' | 'api';
  workflowId: string;
}

export interface SyncPageInput extends SyncRunRef {
  mode: CrmSyncMode;
  objectType: CrmObjectType;
}

export interface SyncPageResult {
  done: boolean;
  phase: 'records' | 'deletions' | 'done';
  records: number;
  added: number;
  updated: number;
  deleted: number;
}

export interface SyncOutcome {
  status: 'completed' | 'failed';
  added: number;
  updated: number;
  deleted: number;
  failed: number;
  pages: number;
}

export interface CrmSyncActivityDeps {
  pool: pg.Pool;
  credentials: CredentialStore;
  logger: Logger;
  /** Records per page; capped at each provider's maximum. */
  pageSize?: number;
  /** How far incremental windows reach back before the watermark, so nothing slips between runs. */
  overlapMs?: number;
  /** One page activity stops after this many pages (default 200) ... */
  pagesPerActivity?: number;
  /** ... or after this long (default 10 s), and the workflow schedules the next one. */
  activityTimeBudgetMs?: number;
}

/** Pages fetched ahead of the writer; also the most pages one transaction writes. */
const FETCH_AHEAD = 4;

/** A sync that has not reported progress for this long is considered dead (its worker crashed and the workflow was terminated). */
const STALE_RUN_MINUTES = 10;

const worker = (orgId: string) => ({ kind: 'worker', orgId }) as const;

/**
 * Heartbeats every second while pages are in flight (the SDK throttles what it sends), so a
 * worker that dies mid-page is noticed after the workflow's heartbeat timeout rather than the
 * activity's start-to-close timeout. Details are counts only (type, phase, pages, records).
 * Heartbeating is also how a cancellation arrives; `cancelled()` reads it. No-ops outside an activity.
 */
function heartbeatWhileRunning() {
  let ctx: Context;
  try {
    ctx = Context.current();
  } catch {
    return { progress: (_details: object) => {}, cancelled: () => false, throwIfCancelled: () => {}, stop: () => {} };
  }
  let details: object | undefined;
  ctx.heartbeat();
  const timer = setInterval(() => ctx.heartbeat(details), 1_000);
  return {
    progress(next: object) {
      details = next;
      ctx.heartbeat(details);
    },
    cancelled: () => ctx.cancellationSignal.aborted,
    throwIfCancelled() {
      // Pages committed so far stay committed; the retry (or the next run) resumes at the checkpoint.
      if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason ?? new CancelledFailure('activity cancelled');
    },
    stop: () => clearInterval(timer),
  };
}

type FetchedPage = { kind: 'records'; page: CrmPage } | { kind: 'deletions'; page: CrmDeletionsPage };

interface StateRow {
  watermark: Date | null;
  run_id: string | null;
  phase: 'records' | 'deletions' | 'done';
  cursor: string | null;
}

async function claimState(tx: Tx, input: SyncPageInput): Promise<StateRow> {
  // A row belongs to one run at a time: a new run takes it over and starts the type from scratch;
  // the same run (a retry, a resumed worker, a continued-as-new workflow) keeps its cursor.
  const { rows } = await tx.query<StateRow>(
    `insert into public.crm_sync_state as s (org_id, connection_id, object_type, run_id, phase, cursor)
     values ($1, $2, $3, $4, 'records', null)
     on conflict (connection_id, object_type) do update
       set run_id = excluded.run_id, phase = 'records', cursor = null
       where s.run_id is distinct from excluded.run_id
     returning watermark, run_id, phase, cursor`,
    [input.orgId, input.connectionId, input.objectType, input.syncRunId],
  );
  if (rows[0]) return rows[0];
  const existing = await tx.query<StateRow>(
    `select watermark, run_id, phase, cursor from public.crm_sync_state where connection_id = $1 and object_type = $2 for update`,
    [input.connectionId, input.objectType],
  );
  return existing.rows[0]!;
}

export function createCrmSyncActivities(deps: CrmSyncActivityDeps) {
  const { pool, credentials } = deps;
  const overlapMs = deps.overlapMs ?? 5 * 60_000;
  const pagesPerActivity = Math.max(1, deps.pagesPerActivity ?? 200);
  const timeBudgetMs = deps.activityTimeBudgetMs ?? 10_000;

  async function beginCrmSync(input: BeginSyncInput): Promise<{ objectTypes: CrmObjectType[] }> {
    return withPrincipal(pool, worker(input.orgId), async (tx) => {
      const connection = await tx.query(`select status from public.crm_connections where id = $1 and org_id = $2`, [input.connectionId, input.orgId]);
      if (connection.rowCount !== 1) {
        throw ApplicationFailure.nonRetryable(`connection ${input.connectionId} does not exist`, CrmFailureTypes.connectionUnavailable);
      }
      const other = await tx.query(
        `select id from public.crm_sync_runs
          where connection_id = $1 and org_id = $2 and status = 'running' and id <> $3
            and coalesce((progress ->> 'at')::timestamptz, started_at) > now() - make_interval(mins => $4)`,
        [input.connectionId, input.orgId, input.syncRunId, STALE_RUN_MINUTES],
      );
      if ((other.rowCount ?? 0) > 0) {
        throw ApplicationFailure.nonRetryable(`another sync of connection ${input.connectionId} is running`, CrmFailureTypes.alreadyRunning);
      }
      // Runs a dead worker left behind are closed, so history stays truthful.
      await tx.query(
        `update public.crm_sync_runs set status = 'failed', finished_at = now(), error = '{"type":"abandoned","message":"the sync stopped reporting progress"}'
          where connection_id = $1 and org_id = $2 and status = 'running' and id <> $3`,
        [input.connectionId, input.orgId, input.syncRunId],
      );
      await tx.query(
        `insert into public.crm_sync_runs (id, org_id, connection_id, mode, trigger, status, workflow_id)
         values ($1, $2, $3, $4, $5, 'running', $6) on conflict (id) do nothing`,
        [input.syncRunId, input.orgId, input.connectionId, input.mode, input.trigger, input.workflowId],
      );
      return { objectTypes: [...crmObjectTypes] };
    });
  }

  /**
   * Syncs pages of one object type until it is exhausted or the invocation's budget (time, pages)
   * is spent. Fetching runs ahead of writing by up to FETCH_AHEAD pages; every page already
   * fetched is written in one transaction together with the checkpoint after the last of them,
   * so a crash or a retry resumes at the first uncommitted page and re-fetches at most that many.
   * Answers the aggregated counts and the phase after the last committed page.
   */
  async function syncCrmPage(input: SyncPageInput): Promise<SyncPageResult> {
    const heartbeat = heartbeatWhileRunning();
    const started = Date.now();
    const total: SyncPageResult = { done: false, phase: 'records', records: 0, added: 0, updated: 0, deleted: 0 };
    let stopFetching = false;
    let fetching: Promise<void> | null = null;
    let wakeFetcher: (() => void) | null = null;
    try {
      const scope = { orgId: input.orgId, connectionId: input.connectionId };
      const state = await withPrincipal(pool, worker(input.orgId), (tx) => claimState(tx, input));
      if (state.phase === 'done') return { ...total, done: true, phase: 'done' };

      const { adapter } = await credentials.open(scope);
      const since = input.mode === 'incremental' && state.watermark ? new Date(state.watermark.getTime() - overlapMs) : null;
      const fullPass = since === null;
      const fetchPage = async (phase: 'records' | 'deletions', cursor: string | null): Promise<FetchedPage> => {
        const pageRequest = { cursor, ...(deps.pageSize ? { pageSize: deps.pageSize } : {}) };
        if (phase === 'deletions') return { kind: 'deletions', page: await adapter.listDeletedSince(input.objectType, since ?? new Date(0), pageRequest) };
        return { kind: 'records', page: await (since ? adapter.listChangedSince(input.objectType, since, pageRequest) : adapter.listPage(input.objectType, pageRequest)) };
      };
      const budgetLeft = (pages: number) => pages < pagesPerActivity && Date.now() - started < timeBudgetMs && !heartbeat.cancelled();

      // Producer: fetches pages in order into `ready`, at most FETCH_AHEAD unwritten at a time.
      const ready: FetchedPage[] = [];
      let fetchFailure: { error: unknown } | null = null;
      let fetchedAll = false;
      let wake: (() => void) | null = null;
      const signal = () => {
        wake?.();
        wake = null;
      };
      wakeFetcher = signal;
      const waitForSignal = () => new Promise<void>((resolve) => (wake = resolve));
      fetching = (async () => {
        let phase: 'records' | 'deletions' = state.phase === 'deletions' ? 'deletions' : 'records';
        let cursor = state.cursor;
        try {
          for (let fetched = 0; ; ) {
            const page = await fetchPage(phase, cursor);
            fetched++;
            ready.push(page);
            signal();
            if (page.page.nextCursor !== null) {
              cursor = page.page.nextCursor;
            } else if (phase === 'records' && !fullPass && adapter.supportsDeletionFeed(input.objectType)) {
              // The records phase ended in an incremental run: the deletion feed follows.
              phase = 'deletions';
              cursor = null;
            } else {
              break;
            }
            if (!budgetLeft(fetched)) break;
            while (ready.length >= FETCH_AHEAD && !stopFetching) await waitForSignal();
            if (stopFetching) break;
          }
        } catch (error) {
          fetchFailure = { error };
        } finally {
          fetchedAll = true;
          signal();
        }
      })();

      // Consumer: writes whatever has been fetched, one transaction per batch of pages.
      let phase: SyncPageResult['phase'] = state.phase;
      let pages = 0;
      for (;;) {
        while (ready.length === 0 && !fetchedAll) await waitForSignal();
        if (ready.length === 0) break;
        const batch = ready.splice(0, ready.length);
        signal();
        const result = await withPrincipal(pool, worker(input.orgId), async (tx) => {
          const sum = { records: 0, added: 0, updated: 0, deleted: 0, failed: 0 };
          let after: SyncPageResult['phase'] = phase;
          let cursor: string | null = null;
          // The fetcher moves from records to deletions, never back: record pages come first.
          // They go into one statement, a bigger batch than a page (the last copy of a record
          // listed twice wins, as it would page by page).
          const recordPages = batch.flatMap((fetched) => (fetched.kind === 'records' ? [fetched.page] : []));
          if (recordPages.length > 0) {
            const records = recordPages.flatMap((page) => page.records);
            const counts = await upsertRecords(tx, scope, input.objectType, records, fullPass ? input.syncRunId : null);
            sum.records += records.length;
            sum.added += counts.added;
            sum.updated += counts.updated;
            sum.failed += counts.failed;
            cursor = recordPages.at(-1)!.nextCursor;
            after = 'records';
            if (cursor === null) {
              if (fullPass) {
                // Every live record was listed in this run: the ones it never saw are gone.
                sum.deleted += await tombstoneUnseen(tx, scope, input.objectType, input.syncRunId);
                after = 'done';
              } else {
                after = adapter.supportsDeletionFeed(input.objectType) ? 'deletions' : 'done';
              }
            }
          }
          for (const fetched of batch) {
            if (fetched.kind !== 'deletions') continue;
            cursor = fetched.page.nextCursor;
            sum.deleted += await tombstoneRecords(tx, scope, input.objectType, fetched.page.externalIds);
            after = cursor === null ? 'done' : 'deletions';
          }
          await saveCheckpoint(tx, input, after, cursor, batch.length, sum);
          return { phase: after, ...sum };
        });
        crmRecordsSynced.inc({ provider: adapter.provider, object_type: input.objectType }, result.added + result.updated);
        phase = result.phase;
        pages += batch.length;
        total.records += result.records;
        total.added += result.added;
        total.updated += result.updated;
        total.deleted += result.deleted;
        heartbeat.progress({ objectType: input.objectType, phase, pages, records: total.records });
      }
      if (fetchFailure) throw (fetchFailure as { error: unknown }).error;
      heartbeat.throwIfCancelled();
      return { ...total, done: phase === 'done', phase };
    } catch (err) {
      throw toActivityFailure(err);
    } finally {
      stopFetching = true;
      wakeFetcher?.();
      // A page in flight when the writer failed is dropped: the retry fetches it again.
      await fetching?.catch(() => {});
      heartbeat.stop();
    }
  }

  /** The checkpoint and the run's counters and progress, in one statement. */
  async function saveCheckpoint(
    tx: Tx,
    input: SyncPageInput,
    phase: SyncPageResult['phase'],
    cursor: string | null,
    pages: number,
    counts: { records: number; added: number; updated: number; deleted: number; failed: number },
  ): Promise<void> {
    await tx.query(
      `with checkpoint as (
         update public.crm_sync_state set phase = $8, cursor = $10
          where connection_id = $11 and object_type = $7 and run_id = $1
       )
       update public.crm_sync_runs
          set added = added + $3, updated = updated + $4, deleted = deleted + $5, failed = failed + $6, pages = pages + $12,
              progress = jsonb_build_object('objectType', $7::text, 'phase', $8::text, 'at', now(),
                           'seen', coalesce((progress -> 'seen')::jsonb, '{}'::jsonb)
                                   || jsonb_build_object($7::text, coalesce((progress -> 'seen' ->> $7::text)::int, 0) + $9::int))
        where id = $1 and org_id = $2`,
      [
        input.syncRunId,
        input.orgId,
        counts.added,
        counts.updated,
        counts.deleted,
        counts.failed,
        input.objectType,
        phase,
        counts.records,
        phase === 'done' ? null : cursor,
        input.connectionId,
        pages,
      ],
    );
  }

  async function completeCrmSync(input: SyncRunRef & { error?: { type: string; message: string } }): Promise<SyncOutcome> {
    return withPrincipal(pool, worker(input.orgId), async (tx) => {
      const status = input.error ? 'failed' : 'completed';
      const { rows } = await tx.query<{ added: number; updated: number; deleted: number; failed: number; pages: number; started_at: Date }>(
        `update public.crm_sync_runs set status = $3, error = $4, finished_at = now(),
                progress = progress || jsonb_build_object('at', now())
          where id = $1 and org_id = $2 and status = 'running'
          returning added, updated, deleted, failed, pages, started_at`,
        [input.syncRunId, input.orgId, status, input.error ? JSON.stringify(input.error) : null],
      );
      const run = rows[0];
      if (!run) {
        // Finished already (a retry of this activity, or a run closed as abandoned): its
        // outcome stands and is what this sync reports.
        const finished = await tx.query<{ status: 'completed' | 'failed'; added: number; updated: number; deleted: number; failed: number; pages: number }>(
          `select status, added, updated, deleted, failed, pages from public.crm_sync_runs where id = $1 and org_id = $2`,
          [input.syncRunId, input.orgId],
        );
        const stored = finished.rows[0];
        if (!stored) throw ApplicationFailure.nonRetryable(`sync run ${input.syncRunId} vanished`, CrmFailureTypes.connectionUnavailable);
        return { status: stored.status, added: stored.added, updated: stored.updated, deleted: stored.deleted, failed: stored.failed, pages: stored.pages };
      }
      if (!input.error) {
        // The next incremental run starts from when this one started (minus the overlap).
        await tx.query(
          `update public.crm_sync_state set watermark = $3, phase = 'done', cursor = null
            where connection_id = $1 and org_id = $2 and run_id = $4`,
          [input.connectionId, input.orgId, run.started_at, input.syncRunId],
        );
        await tx.query(`update public.crm_connections set last_error = null where id = $1 and org_id = $2 and status = 'active'`, [input.connectionId, input.orgId]);
      }
      return { status, added: run.added, updated: run.updated, deleted: run.deleted, failed: run.failed, pages: run.pages };
    });
  }

  return { beginCrmSync, syncCrmPage, completeCrmSync };
}

export type CrmSyncActivities = ReturnType<typeof createCrmSyncActivities>;
