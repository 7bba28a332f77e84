import { ScheduleNotFoundError, ScheduleOverlapPolicy, WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { withPrincipal } from '../../../lib/db.js';
import type { Principal } from '../../../lib/principal.js';
import { crmSyncScheduleId, crmSyncWorkflowId } from '../../../workflows/crm-sync-ids.js';
import { crmSync } from '../../../workflows/crm-sync.js';
import { OrgIdSearchAttribute } from '../../../workflows/search-attributes.js';
import { cursorAt, decodeCursor, toPage } from '../../pagination.js';
import { ProblemError } from '../../problems.js';
import { requireOrgRole } from '../org-access.js';
import { callTemporal } from '../temporal-calls.js';
import { columns, toView, type ConnectionRow, type ConnectionView, type CrmContext, type ScheduleInput } from './shared.js';

export interface SyncRunView {
  id: string;
  mode: 'incremental' | 'full';
  trigger: string;
  status: 'running' | 'completed' | 'failed';
  counts: { added: number; updated: number; deleted: number; failed: number; pages: number };
  progress: Record<string, unknown>;
  error: { type: string; message: string } | null;
  startedAt: string;
  finishedAt: string | null;
}

export function createSyncOps(ctx: CrmContext) {
  const { pool, temporal, taskQueue, temporalDeadlineMs, getRow } = ctx;

  /** The Temporal schedule that `schedule` describes, created or replaced. */
  async function applySchedule(orgId: string, connectionId: string, schedule: ScheduleInput): Promise<void> {
    const spec = schedule.intervalSeconds
      ? { intervals: [{ every: `${schedule.intervalSeconds} seconds` as const }] }
      : { cronExpressions: [schedule.cron!], ...(schedule.timeZone ? { timezone: schedule.timeZone } : {}) };
    const action = {
      type: 'startWorkflow' as const,
      workflowType: crmSync,
      workflowId: crmSyncWorkflowId(connectionId),
      taskQueue,
      args: [{ orgId, connectionId, mode: schedule.mode, trigger: 'schedule' as const }] as Parameters<typeof crmSync>,
      typedSearchAttributes: [{ key: OrgIdSearchAttribute, value: orgId }],
    };
    const scheduleId = crmSyncScheduleId(connectionId);
    await callTemporal(
      temporal,
      temporalDeadlineMs,
      async () => {
        try {
          await temporal.schedule
            .getHandle(scheduleId)
            .update((previous) => ({ ...previous, spec, action, policies: { ...previous.policies, overlap: ScheduleOverlapPolicy.SKIP }, state: { ...previous.state, paused: schedule.paused } }));
        } catch (err) {
          if (!(err instanceof ScheduleNotFoundError)) throw err;
          await temporal.schedule.create({ scheduleId, spec, action, policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 minute' }, state: { paused: schedule.paused } });
        }
      },
      'The schedule is saved but Temporal did not apply it in time; repeat the request to apply it.',
    );
  }

  /**
   * The row holds the schedule asked for; Temporal's schedule follows it. The row is written
   * first (a short transaction), then Temporal is called with no transaction open, then the row
   * is read again: a concurrent PUT may have saved another schedule while this one was applied
   * in Temporal, and whichever request sees the row change applies the newer one, so row and
   * Temporal end up agreeing. A request that fails after saving answers 503; repeating it
   * applies what the row says.
   */
  async function putSchedule(principal: Principal, orgId: string, connectionId: string, schedule: ScheduleInput): Promise<ConnectionView> {
    let view = await withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      await getRow(tx, orgId, connectionId);
      const { rows } = await tx.query<ConnectionRow>(`update public.crm_connections set schedule = $3 where id = $1 and org_id = $2 returning ${columns}`, [
        connectionId,
        orgId,
        JSON.stringify(schedule),
      ]);
      return toView(rows[0]!);
    });
    for (let applied: ScheduleInput | null = null; view.schedule !== null && JSON.stringify(view.schedule) !== JSON.stringify(applied); ) {
      applied = view.schedule;
      await applySchedule(orgId, connectionId, applied);
      view = await withPrincipal(pool, principal, async (tx) => toView(await getRow(tx, orgId, connectionId)));
    }
    return view;
  }

  async function startSync(principal: Principal, orgId: string, connectionId: string, mode: 'incremental' | 'full'): Promise<{ workflowId: string }> {
    const row = await withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      return getRow(tx, orgId, connectionId);
    });
    if (row.status !== 'active') throw new ProblemError('conflict', `The connection is ${row.status}; authorize or fix it before syncing.`);
    const workflowId = crmSyncWorkflowId(connectionId);
    try {
      await callTemporal(
        temporal,
        temporalDeadlineMs,
        () =>
          temporal.workflow.start(crmSync, {
            workflowId,
            taskQueue,
            args: [{ orgId, connectionId, mode, trigger: 'api' }],
            typedSearchAttributes: [{ key: OrgIdSearchAttribute, value: orgId }],
          }),
        'Temporal did not accept the sync in time; retry.',
      );
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) throw new ProblemError('conflict', 'A sync of this connection is already running.');
      throw err;
    }
    return { workflowId };
  }

  async function listSyncs(principal: Principal, orgId: string, connectionId: string, page: { limit: number; cursor?: string | undefined }) {
    const cursor = decodeCursor(page.cursor);
    return withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'member');
      await getRow(tx, orgId, connectionId);
      const { rows } = await tx.query<{ id: string; created_at: Date; mode: SyncRunView['mode']; trigger: string; status: SyncRunView['status']; added: number; updated: number; deleted: number; failed: number; pages: number; progress: Record<string, unknown>; error: SyncRunView['error']; finished_at: Date | null; cursor_at: string }>(
        `select id, started_at as created_at, ${cursorAt('started_at')}, mode, trigger, status, added, updated, deleted, failed, pages, progress, error, finished_at
           from public.crm_sync_runs
          where org_id = $1 and connection_id = $2 and ($3::timestamptz is null or (started_at, id) < ($3::timestamptz, $4::uuid))
          order by started_at desc, id desc limit $5`,
        [orgId, connectionId, cursor?.createdAt ?? null, cursor?.id ?? null, page.limit + 1],
      );
      return toPage(rows, page.limit, (r): SyncRunView => ({
        id: r.id,
        mode: r.mode,
        trigger: r.trigger,
        status: r.status,
        counts: { added: r.added, updated: r.updated, deleted: r.deleted, failed: r.failed, pages: r.pages },
        progress: r.progress,
        error: r.error,
        startedAt: r.created_at.toISOString(),
        finishedAt: r.finished_at?.toISOString() ?? null,
      }));
    });
  }

  return { putSchedule, startSync, listSyncs };
}
