import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOrgEventPublisher, type WebhookDeliveryRef } from '../../activities/org-events/publish.js';
import { orgEventId } from '../../lib/org-events.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';

/**
 * The publish function other activities call, against the real database: an event is recorded
 * once per cause (a retried activity publishes the same event), with one delivery per subscribed
 * endpoint, numbered in commit order per org, and a dispatch of each pending delivery every time
 * (starting the delivery workflow is idempotent by its id, so a crash between commit and start
 * is repaired by the retry).
 */
describe('publishing org events', () => {
  let pool: pg.Pool;
  let admin: pg.Pool;
  const started: WebhookDeliveryRef[] = [];
  let failDispatch = false;

  beforeAll(() => {
    pool = appPool();
    admin = adminPool();
  });
  afterAll(async () => {
    await pool.end();
    await admin.end();
  });

  const publisher = () =>
    createOrgEventPublisher({
      pool,
      dispatch: {
        async startDelivery(ref) {
          if (failDispatch) throw new Error('Temporal is unreachable');
          started.push(ref);
        },
      },
    });

  async function orgWithEndpoints(eventTypes: string[][]) {
    const { orgId } = await createOrgWithMembers(admin, ['owner']);
    const ids: string[] = [];
    for (const types of eventTypes) {
      const { rows } = await admin.query<{ id: string }>(`insert into public.webhook_endpoints (org_id, url, event_types, secret) values ($1, 'https://93.184.215.14/x', $2, 'v1.k.iv.ct.tag') returning id`, [orgId, types]);
      ids.push(rows[0]!.id);
    }
    return { orgId, endpoints: ids };
  }

  it('records one event and one delivery per subscribed endpoint, however often the cause is published', async () => {
    const { orgId, endpoints } = await orgWithEndpoints([[], ['approval.requested'], ['reply.failed']]);
    started.length = 0;
    const event = { orgId, type: 'approval.requested' as const, cause: 'approval-1', data: { approvalId: 'approval-1' } };

    const first = await publisher().publish(event);
    const again = await publisher().publish(event);

    expect(first).toEqual({ eventId: orgEventId(orgId, 'approval.requested', 'approval-1'), deliveries: 2 });
    expect(again.eventId).toBe(first.eventId);
    const events = await admin.query(`select id, seq, type, payload from public.org_events where org_id = $1`, [orgId]);
    expect(events.rows).toEqual([{ id: first.eventId, seq: '1', type: 'approval.requested', payload: { approvalId: 'approval-1' } }]);
    const deliveries = await admin.query<{ id: string; endpoint_id: string }>(`select id, endpoint_id from public.webhook_deliveries where event_id = $1 order by endpoint_id`, [first.eventId]);
    expect(deliveries.rows.map((d) => d.endpoint_id).sort()).toEqual([endpoints[0], endpoints[1]].sort());
    // Each publish hands every still-pending delivery to Temporal (idempotent there by workflow id).
    expect(started.map((s) => s.deliveryId).sort()).toEqual([...deliveries.rows.map((d) => d.id), ...deliveries.rows.map((d) => d.id)].sort());
  });

  it('a dispatch that fails after the commit is repaired by publishing again (the activity retry)', async () => {
    const { orgId } = await orgWithEndpoints([[]]);
    started.length = 0;
    const event = { orgId, type: 'run.failed' as const, cause: 'run-1', data: {} };
    failDispatch = true;
    await expect(publisher().publish(event)).rejects.toThrow('Temporal is unreachable');
    failDispatch = false;
    await publisher().publish(event);
    const { rows } = await admin.query<{ id: string }>(`select d.id from public.webhook_deliveries d join public.org_events e on e.id = d.event_id where e.org_id = $1`, [orgId]);
    expect(rows).toHaveLength(1);
    expect(started).toEqual([{ orgId, deliveryId: rows[0]!.id }]);
  });

  it('numbers concurrent events of one org 1..n without gaps or duplicates, and each org on its own', async () => {
    const { orgId } = await orgWithEndpoints([]);
    const other = await orgWithEndpoints([]);
    await Promise.all([
      ...Array.from({ length: 12 }, (_, i) => publisher().publish({ orgId, type: 'run.failed', cause: `run-${i}`, data: {} })),
      publisher().publish({ orgId: other.orgId, type: 'run.failed', cause: 'run-x', data: {} }),
    ]);
    const { rows } = await admin.query<{ seq: string }>(`select seq from public.org_events where org_id = $1 order by seq`, [orgId]);
    expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect((await admin.query(`select seq from public.org_events where org_id = $1`, [other.orgId])).rows).toEqual([{ seq: '1' }]);
  });
});
