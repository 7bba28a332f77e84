/**
 * Writing synced records: batched upserts on the natural key (connection, object type,
 * external id) inside a transaction the caller opened as the org's worker, and tombstones.
 * Used by the sync activities and by webhook intake, so both land records the same way.
 */
import type { Tx } from '../../lib/db.js';
import type { CrmObjectType, CrmRecord } from './types.js';

export interface UpsertCounts {
  added: number;
  updated: number;
  failed: number;
}

const MAX_EXTERNAL_ID = 100;

/** A record as the jsonb row `upsertRecords` feeds to jsonb_to_recordset. */
export function toRecordRow(r: CrmRecord) {
  return {
    external_id: r.externalId,
    name: r.name,
    email: r.email,
    pipeline_id: r.pipelineId,
    stage_id: r.stageId,
    owner_id: r.ownerId,
    properties: r.properties,
    remote_updated_at: r.updatedAt?.toISOString() ?? null,
  };
}

/**
 * One statement per batch. `updated` counts records whose content changed (or came back from a
 * tombstone). A row whose content, remote timestamp and liveness are unchanged is not rewritten
 * at all unless a full sync has to mark it seen. All CTEs read the same snapshot, so `before` is
 * the state prior to this upsert.
 *
 * `before` probes the primary key once per input row. As a plain join, the planner (trusting
 * statistics taken before a first sync filled the table) scanned every record of the
 * connection for each batch, which made a sync quadratic in the size of the account; the
 * `limit 1` keeps the lateral subquery from being flattened back into such a join.
 */
export async function upsertRecords(
  tx: Tx,
  scope: { orgId: string; connectionId: string },
  objectType: CrmObjectType,
  records: CrmRecord[],
  seenRunId: string | null,
): Promise<UpsertCounts> {
  const valid = records.filter((r) => r.externalId.length > 0 && r.externalId.length <= MAX_EXTERNAL_ID);
  const failed = records.length - valid.length;
  // A page can repeat a record (overlapping windows, HubSpot's GTE restarts): last one wins.
  const unique = [...new Map(valid.map((r) => [r.externalId, r])).values()];
  if (unique.length === 0) return { added: 0, updated: 0, failed };
  const rows = unique.map(toRecordRow);
  const { rows: result } = await tx.query<{ added: number; updated: number }>(
    `with input as (
       select * from jsonb_to_recordset($4::jsonb) as x(
         external_id text, name text, email text, pipeline_id text, stage_id text, owner_id text,
         properties jsonb, remote_updated_at timestamptz)
     ),
     before as (
       select r.*
       from input i
       cross join lateral (
         select r.external_id, r.properties, r.name, r.stage_id, r.pipeline_id, r.owner_id, r.email, r.deleted_at
         from public.crm_records r
         where r.connection_id = $2 and r.object_type = $3 and r.external_id = i.external_id
         limit 1
       ) r
     ),
     upserted as (
       insert into public.crm_records as r
         (org_id, connection_id, object_type, external_id, name, email, pipeline_id, stage_id, owner_id, properties, remote_updated_at, deleted_at, seen_run_id)
       select $1, $2, $3, i.external_id, i.name, i.email, i.pipeline_id, i.stage_id, i.owner_id, coalesce(i.properties, '{}'::jsonb), i.remote_updated_at, null, $5
       from input i
       on conflict (connection_id, object_type, external_id) do update set
         name = excluded.name, email = excluded.email, pipeline_id = excluded.pipeline_id, stage_id = excluded.stage_id,
         owner_id = excluded.owner_id, properties = excluded.properties, remote_updated_at = excluded.remote_updated_at,
         deleted_at = null, seen_run_id = coalesce(excluded.seen_run_id, r.seen_run_id)
       where r.deleted_at is not null
          or (excluded.seen_run_id is not null and r.seen_run_id is distinct from excluded.seen_run_id)
          or (r.name, r.email, r.pipeline_id, r.stage_id, r.owner_id, r.properties, r.remote_updated_at)
             is distinct from (excluded.name, excluded.email, excluded.pipeline_id, excluded.stage_id, excluded.owner_id, excluded.properties, excluded.remote_updated_at)
       returning r.external_id
     )
     select
       (count(*) filter (where b.external_id is null))::int as added,
       (count(*) filter (where b.external_id is not null and (
          b.deleted_at is not null or b.properties is distinct from i.properties or b.name is distinct from i.name
          or b.stage_id is distinct from i.stage_id or b.pipeline_id is distinct from i.pipeline_id
          or b.owner_id is distinct from i.owner_id or b.email is distinct from i.email)))::int as updated
     from upserted u
     join input i on i.external_id = u.external_id
     left join before b on b.external_id = u.external_id`,
    [scope.orgId, scope.connectionId, objectType, JSON.stringify(rows), seenRunId],
  );
  return { added: result[0]?.added ?? 0, updated: result[0]?.updated ?? 0, failed };
}

/** Tombstones the given records; answers how many were live. */
export async function tombstoneRecords(tx: Tx, scope: { orgId: string; connectionId: string }, objectType: CrmObjectType, externalIds: string[]): Promise<number> {
  if (externalIds.length === 0) return 0;
  const res = await tx.query(
    `update public.crm_records set deleted_at = now()
      where connection_id = $1 and org_id = $2 and object_type = $3 and external_id = any($4::text[]) and deleted_at is null`,
    [scope.connectionId, scope.orgId, objectType, externalIds],
  );
  return res.rowCount ?? 0;
}

/** After a full pass over `objectType`: every live record that pass did not see was deleted. */
export async function tombstoneUnseen(tx: Tx, scope: { orgId: string; connectionId: string }, objectType: CrmObjectType, runId: string): Promise<number> {
  const res = await tx.query(
    `update public.crm_records set deleted_at = now()
      where connection_id = $1 and org_id = $2 and object_type = $3 and deleted_at is null
        and seen_run_id is distinct from $4`,
    [scope.connectionId, scope.orgId, objectType, runId],
  );
  return res.rowCount ?? 0;
}
