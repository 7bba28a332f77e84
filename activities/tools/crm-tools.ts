/**
 * The agent's CRM tools: search and read records, add a note, create a task, move a deal to a
 * stage. They act on the CRM connection the agent is bound to (`agents.crm_connection_id`, same
 * org by foreign key) and on nothing else; an agent without one gets a tool error.
 *
 * - Requests go through `CredentialStore.open`, so they carry a current token (refreshed once on
 *   401) and take their slot in the connection's rate governor, the same budget syncs use.
 * - Writes run inside `ctx.runEffectOnce`: a retry after the effect committed returns the
 *   recorded result. Neither Kommo nor HubSpot accepts an idempotency key on writes, so for the
 *   window between the provider's success and our commit (a worker killed mid-call), a retried
 *   attempt first looks for its own note/task (same record, same text, created since the tool
 *   call was first scheduled) and records that one instead of writing again. A stage change is
 *   idempotent by nature and is simply repeated.
 * - 429/5xx are retried by Temporal after the provider's wait; everything else the CRM refuses
 *   (unknown record, invalid stage, a connection that needs re-authorization) becomes a tool
 *   error the model sees.
 */
import { Context } from '@temporalio/activity';
import { z } from 'zod';
import { ConnectionUnavailableError, type CredentialStore } from '../../integrations/crm/credentials.js';
import { CrmError } from '../../integrations/crm/http.js';
import { upsertRecords } from '../../integrations/crm/record-store.js';
import type { CrmAdapter, CrmEntityType, CrmRecord, CrmTarget } from '../../integrations/crm/types.js';
import { toActivityFailure } from '../activity-failure.js';
import type { JsonValue } from '../effects.js';
import { defineTool, ToolError, type AgentTool, type ToolContext } from './registry.js';

export interface CrmToolDeps {
  credentials: CredentialStore;
}

/** A retried write looks back this far before its first scheduling, for clock skew between Temporal and the CRM. */
const CLOCK_SKEW_MS = 60_000;
const MAX_PROPERTY_CHARS = 300;
const MAX_PROPERTIES = 40;

const recordType = z.enum(['deals', 'contacts', 'companies']).describe('deals (Kommo: leads), contacts or companies');
const recordId = z.string().min(1).max(100).describe("The record's id in the CRM");

function failureFor(err: unknown): unknown {
  if (err instanceof ToolError) return err;
  if (err instanceof ConnectionUnavailableError) return new ToolError(`The CRM connection cannot be used: ${err.message}.`);
  if (err instanceof CrmError) {
    if (err.retryable) return toActivityFailure(err);
    if (err.kind === 'not-found') return new ToolError(`The CRM has no such record (${err.message}).`);
    return new ToolError(`The CRM refused the request: ${err.message}`);
  }
  return err;
}

/** The bound connection's governed adapter, or a tool error the model can act on. */
async function openCrm(deps: CrmToolDeps, ctx: ToolContext): Promise<{ adapter: CrmAdapter; connectionId: string }> {
  const connectionId = await ctx.withOrgScope(async (tx) => {
    const { rows } = await tx.query<{ crm_connection_id: string | null }>(`select crm_connection_id from public.agents where id = $1 and org_id = $2`, [
      ctx.agentId,
      ctx.orgId,
    ]);
    return rows[0]?.crm_connection_id ?? null;
  });
  if (!connectionId) throw new ToolError('This agent is not connected to a CRM. An admin sets crmConnectionId on the agent.');
  const { adapter } = await deps.credentials.open({ orgId: ctx.orgId, connectionId });
  return { adapter, connectionId };
}

/** Attempt number and first scheduling time of the tool's activity (attempt 1 outside Temporal, e.g. unit tests). */
function activityAttempt(): { attempt: number; firstScheduledMs: number } {
  try {
    const { info } = Context.current();
    return { attempt: info.attempt, firstScheduledMs: info.scheduledTimestampMs };
  } catch {
    return { attempt: 1, firstScheduledMs: Date.now() };
  }
}

function compactProperties(properties: Record<string, unknown>): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const [key, value] of Object.entries(properties)) {
    if (Object.keys(out).length >= MAX_PROPERTIES) break;
    if (value === null || typeof value === 'number' || typeof value === 'boolean') out[key] = value;
    else if (typeof value === 'string') out[key] = value.slice(0, MAX_PROPERTY_CHARS);
  }
  return out;
}

function recordView(r: CrmRecord): { [key: string]: JsonValue } {
  return {
    type: r.objectType,
    id: r.externalId,
    name: r.name,
    email: r.email,
    pipelineId: r.pipelineId,
    stageId: r.stageId,
    ownerId: r.ownerId,
    updatedAt: r.updatedAt?.toISOString() ?? null,
  };
}

/**
 * Writes a note or task at most once per tool call (see the module comment). `write` performs
 * the provider call; the first attempt writes directly, later attempts look for their own
 * earlier write first.
 */
async function writeOnce(
  deps: CrmToolDeps,
  ctx: ToolContext,
  kind: 'note' | 'task',
  target: CrmTarget,
  text: string,
  write: (adapter: CrmAdapter) => Promise<{ externalId: string }>,
): Promise<JsonValue> {
  const { result } = await ctx.runEffectOnce(async () => {
    const { adapter } = await openCrm(deps, ctx);
    const { attempt, firstScheduledMs } = activityAttempt();
    ctx.heartbeat();
    const earlier = attempt > 1 ? await adapter.findRecentWrite(kind, target, text, new Date(firstScheduledMs - CLOCK_SKEW_MS)) : null;
    const created = earlier ?? (await write(adapter));
    return { [`${kind}Id`]: created.externalId, recordType: target.objectType, recordId: target.externalId };
  });
  return result;
}

export function createCrmTools(deps: CrmToolDeps): AgentTool[] {
  const guarded =
    <A,>(fn: (args: A, ctx: ToolContext) => Promise<JsonValue>) =>
    async (args: A, ctx: ToolContext): Promise<JsonValue> => {
      try {
        return await fn(args, ctx);
      } catch (err) {
        throw failureFor(err);
      }
    };

  const searchRecords = defineTool({
    name: 'crm_search_records',
    description:
      "Searches the CRM records synced from the agent's CRM (deals, contacts, companies) by name, email or id. Returns up to `limit` matches, most recently updated first.",
    kind: 'read',
    parameters: z.strictObject({
      query: z.string().trim().min(1).max(200).describe('Part of a name or email, or an exact record id'),
      type: recordType.optional(),
      limit: z.number().int().min(1).max(20).optional().describe('How many records to return (default 10)'),
    }),
    execute: guarded(async (args: { query: string; type?: CrmEntityType | undefined; limit?: number | undefined }, ctx) => {
      const connectionId = await ctx.withOrgScope(async (tx) => {
        const { rows } = await tx.query<{ crm_connection_id: string | null }>(`select crm_connection_id from public.agents where id = $1 and org_id = $2`, [
          ctx.agentId,
          ctx.orgId,
        ]);
        return rows[0]?.crm_connection_id ?? null;
      });
      if (!connectionId) throw new ToolError('This agent is not connected to a CRM. An admin sets crmConnectionId on the agent.');
      const pattern = `%${args.query.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      const rows = await ctx.withOrgScope(async (tx) => {
        const result = await tx.query<{
          object_type: CrmEntityType;
          external_id: string;
          name: string | null;
          email: string | null;
          pipeline_id: string | null;
          stage_id: string | null;
          owner_id: string | null;
          remote_updated_at: Date | null;
        }>(
          `select object_type, external_id, name, email, pipeline_id, stage_id, owner_id, remote_updated_at
             from public.crm_records
            where org_id = $1 and connection_id = $2 and deleted_at is null and object_type = any($3::text[])
              and (name ilike $4 or email ilike $4 or external_id = $5)
            order by remote_updated_at desc nulls last, external_id
            limit $6`,
          [ctx.orgId, connectionId, args.type ? [args.type] : ['deals', 'contacts', 'companies'], pattern, args.query, args.limit ?? 10],
        );
        return result.rows;
      });
      return {
        results: rows.map((r) => ({
          type: r.object_type,
          id: r.external_id,
          name: r.name,
          email: r.email,
          pipelineId: r.pipeline_id,
          stageId: r.stage_id,
          ownerId: r.owner_id,
          updatedAt: r.remote_updated_at?.toISOString() ?? null,
        })),
      };
    }),
  });

  const getRecord = defineTool({
    name: 'crm_get_record',
    description: 'Reads one record (deal, contact or company) live from the CRM, with its stage, owner and properties.',
    kind: 'read',
    parameters: z.strictObject({ type: recordType, id: recordId }),
    execute: guarded(async (args: { type: CrmEntityType; id: string }, ctx) => {
      const { adapter } = await openCrm(deps, ctx);
      const record = await adapter.getRecord(args.type, args.id);
      if (!record) throw new ToolError(`The CRM has no ${args.type} record with id ${args.id}.`);
      return { ...recordView(record), properties: compactProperties(record.properties) };
    }),
  });

  const addNote = defineTool({
    name: 'crm_add_note',
    description: 'Adds a text note to a deal, contact or company in the CRM.',
    kind: 'effect',
    parameters: z.strictObject({ type: recordType, id: recordId, text: z.string().trim().min(1).max(5000).describe('The note') }),
    execute: guarded(async (args: { type: CrmEntityType; id: string; text: string }, ctx) => {
      const target: CrmTarget = { objectType: args.type, externalId: args.id };
      return writeOnce(deps, ctx, 'note', target, args.text, (adapter) => adapter.addNote(target, args.text));
    }),
  });

  const createTask = defineTool({
    name: 'crm_create_task',
    description: 'Creates a follow-up task on a deal, contact or company in the CRM, due at the given time.',
    kind: 'effect',
    parameters: z.strictObject({
      type: recordType,
      id: recordId,
      text: z.string().trim().min(1).max(2000).describe('What to do'),
      dueAt: z.iso.datetime({ offset: true }).describe('When it is due, ISO 8601 with time zone, e.g. 2026-12-01T09:00:00Z'),
    }),
    execute: guarded(async (args: { type: CrmEntityType; id: string; text: string; dueAt: string }, ctx) => {
      const target: CrmTarget = { objectType: args.type, externalId: args.id };
      const dueAt = new Date(args.dueAt);
      return writeOnce(deps, ctx, 'task', target, args.text, (adapter) => adapter.createTask(target, { text: args.text, dueAt }));
    }),
  });

  const updateStage = defineTool({
    name: 'crm_update_stage',
    description: 'Moves a deal (Kommo: lead) to another stage of its pipeline, or to a stage of another pipeline when pipelineId is given.',
    kind: 'effect',
    parameters: z.strictObject({
      dealId: recordId,
      stageId: z.string().min(1).max(100).describe('The stage id (Kommo status_id, HubSpot dealstage)'),
      pipelineId: z.string().min(1).max(100).optional().describe('Only to move the deal to another pipeline'),
    }),
    execute: guarded(async (args: { dealId: string; stageId: string; pipelineId?: string | undefined }, ctx) => {
      let moved: { record: Awaited<ReturnType<CrmAdapter['updateStage']>>; connectionId: string } | undefined;
      const { result } = await ctx.runEffectOnce(
        async () => {
          const { adapter, connectionId } = await openCrm(deps, ctx);
          ctx.heartbeat();
          const record = await adapter.updateStage(args.dealId, { stageId: args.stageId, ...(args.pipelineId ? { pipelineId: args.pipelineId } : {}) });
          moved = { record, connectionId };
          return recordView(record);
        },
        // Our synced copy follows at once (with the ledger entry), so searches see the new stage.
        async (tx) => {
          if (moved) await upsertRecords(tx, { orgId: ctx.orgId, connectionId: moved.connectionId }, 'deals', [moved.record], null);
        },
      );
      return result;
    }),
  });

  return [searchRecords, getRecord, addNote, createTask, updateStage] as AgentTool[];
}
