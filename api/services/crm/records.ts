import { z } from 'zod';
import { withPrincipal } from '../../../lib/db.js';
import type { Principal } from '../../../lib/principal.js';
import { decodeKeysetCursor, encodeKeysetCursor } from '../../pagination.js';
import { requireOrgRole } from '../org-access.js';
import type { CrmContext } from './shared.js';

export interface RecordView {
  connectionId: string;
  type: string;
  externalId: string;
  name: string | null;
  email: string | null;
  pipelineId: string | null;
  stageId: string | null;
  ownerId: string | null;
  properties: Record<string, unknown>;
  remoteUpdatedAt: string | null;
  deletedAt: string | null;
}

/** Records page by (connection_id, external_id), so their cursor carries that key. */
const recordCursorSchema = z.object({ c: z.uuid(), e: z.string().max(100) });

export function createRecordOps(ctx: CrmContext) {
  const { pool } = ctx;

  async function listRecords(principal: Principal, orgId: string, query: { type: string; q?: string | undefined; connectionId?: string | undefined; includeDeleted?: boolean | undefined; limit: number; cursor?: string | undefined }) {
    // An empty cursor means the first page, as it always has for records.
    const after = decodeKeysetCursor(recordCursorSchema, query.cursor || undefined);
    return withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'member');
      const { rows } = await tx.query<{ connection_id: string; object_type: string; external_id: string; name: string | null; email: string | null; pipeline_id: string | null; stage_id: string | null; owner_id: string | null; properties: Record<string, unknown>; remote_updated_at: Date | null; deleted_at: Date | null }>(
        `select connection_id, object_type, external_id, name, email, pipeline_id, stage_id, owner_id, properties, remote_updated_at, deleted_at
           from public.crm_records
          where org_id = $1 and object_type = $2
            and ($3::uuid is null or connection_id = $3)
            and ($4::text is null or name ilike '%' || $4 || '%' or email ilike '%' || $4 || '%' or external_id = $4)
            and ($5 or deleted_at is null)
            and ($6::uuid is null or (connection_id, external_id) > ($6::uuid, $7::text))
          order by connection_id, external_id limit $8`,
        [orgId, query.type, query.connectionId ?? null, query.q ? query.q.replace(/[\\%_]/g, (m) => `\\${m}`) : null, query.includeDeleted ?? false, after?.c ?? null, after?.e ?? null, query.limit + 1],
      );
      const page = rows.slice(0, query.limit);
      const last = page.at(-1);
      return {
        items: page.map((r): RecordView => ({
          connectionId: r.connection_id,
          type: r.object_type,
          externalId: r.external_id,
          name: r.name,
          email: r.email,
          pipelineId: r.pipeline_id,
          stageId: r.stage_id,
          ownerId: r.owner_id,
          properties: r.properties,
          remoteUpdatedAt: r.remote_updated_at?.toISOString() ?? null,
          deletedAt: r.deleted_at?.toISOString() ?? null,
        })),
        nextCursor: rows.length > query.limit && last ? encodeKeysetCursor({ c: last.connection_id, e: last.external_id }) : null,
      };
    });
  }

  return { listRecords };
}
