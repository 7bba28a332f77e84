import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tombstoneRecords, upsertRecords } from '../../integrations/crm/record-store.js';
import type { CrmRecord } from '../../integrations/crm/types.js';
import { withPrincipal } from '../../lib/db.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';
import { createCrmConnection } from './support.js';

const lead = (id: number, overrides: Partial<CrmRecord> = {}): CrmRecord => ({
  objectType: 'deals',
  externalId: String(id),
  name: `Lead ${id}`,
  email: null,
  pipelineId: '1',
  stageId: '10',
  ownerId: '5',
  properties: { price: id },
  updatedAt: new Date('2026-11-01T00:00:00Z'),
  ...overrides,
});

describe('upsertRecords (the write path of syncs and webhooks)', () => {
  let admin: pg.Pool;
  let pool: pg.Pool;
  let orgId: string;
  let connectionId: string;

  beforeAll(async () => {
    admin = adminPool();
    pool = appPool();
    orgId = (await createOrgWithMembers(admin, ['owner'])).orgId;
    connectionId = await createCrmConnection(admin, orgId, {
      provider: 'kommo',
      apiBaseUrl: 'http://127.0.0.1:9',
      tokens: { accessToken: 'a', refreshToken: null, expiresAt: null },
      authKind: 'token',
    });
  });
  afterAll(async () => {
    await pool.end();
    await admin.end();
  });

  const upsert = (records: CrmRecord[], seenRunId: string | null = null) =>
    withPrincipal(pool, { kind: 'worker', orgId }, (tx) => upsertRecords(tx, { orgId, connectionId }, 'deals', records, seenRunId));
  /** xmin changes whenever Postgres writes a new version of the row. */
  const rowVersions = async () =>
    new Map(
      (
        await admin.query<{ external_id: string; xmin: string; remote_updated_at: Date; seen_run_id: string | null; deleted_at: Date | null }>(
          `select external_id, xmin::text, remote_updated_at, seen_run_id, deleted_at from public.crm_records where connection_id = $1 order by external_id`,
          [connectionId],
        )
      ).rows.map((r) => [r.external_id, r]),
    );

  it('counts new, changed, unchanged and revived records, and rewrites only rows that differ', async () => {
    const first = Array.from({ length: 300 }, (_, i) => lead(1000 + i));
    expect(await upsert(first)).toEqual({ added: 300, updated: 0, failed: 0 });
    const before = await rowVersions();

    // 1000 changes content, 1001 only its remote timestamp, 1002 is tombstoned then comes back,
    // the rest are re-read unchanged; 5000 is new; an over-long id fails.
    await withPrincipal(pool, { kind: 'worker', orgId }, (tx) => tombstoneRecords(tx, { orgId, connectionId }, 'deals', ['1002']));
    const tombstoned = (await rowVersions()).get('1002')!;
    const second = [
      lead(1000, { stageId: '20' }),
      lead(1001, { updatedAt: new Date('2026-11-02T00:00:00Z') }),
      ...first.slice(2),
      lead(5000),
      lead(1, { externalId: 'x'.repeat(101) }),
    ];
    expect(await upsert(second)).toEqual({ added: 1, updated: 2, failed: 1 });

    const after = await rowVersions();
    expect(after.size).toBe(301);
    expect(after.get('1000')!.xmin).not.toBe(before.get('1000')!.xmin);
    expect(after.get('1001')!.xmin).not.toBe(before.get('1001')!.xmin);
    expect(after.get('1001')!.remote_updated_at.toISOString()).toBe('2026-11-02T00:00:00.000Z');
    expect(after.get('1002')!.deleted_at).toBeNull();
    expect(after.get('1002')!.xmin).not.toBe(tombstoned.xmin);
    const untouched = [...after.keys()].filter((id) => Number(id) >= 1003 && Number(id) < 1300);
    expect(untouched).toHaveLength(297);
    for (const id of untouched) expect(after.get(id)!.xmin).toBe(before.get(id)!.xmin);
  });

  it('marks unchanged records as seen by a full pass, so they are not tombstoned as unseen', async () => {
    const runId = randomUUID();
    const all = [...(await rowVersions()).keys()].map((id) => lead(Number(id)));
    const counts = await upsert(all.map((r) => (r.externalId === '1000' ? lead(1000, { stageId: '20' }) : r.externalId === '1001' ? lead(1001, { updatedAt: new Date('2026-11-02T00:00:00Z') }) : r)), runId);
    expect(counts).toEqual({ added: 0, updated: 0, failed: 0 });
    const after = await rowVersions();
    expect([...after.values()].every((r) => r.seen_run_id === runId)).toBe(true);
  });

  it('lands a repeated record once, the last copy winning', async () => {
    expect(await upsert([lead(7000, { name: 'first' }), lead(7000, { name: 'second' })])).toEqual({ added: 1, updated: 0, failed: 0 });
    const { rows } = await admin.query(`select name from public.crm_records where connection_id = $1 and external_id = '7000'`, [connectionId]);
    expect(rows).toEqual([{ name: 'second' }]);
  });
});
