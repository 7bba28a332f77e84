import type pg from 'pg';
import { withPrincipal, type Tx } from '../../lib/db.js';
import type { Principal } from '../../lib/principal.js';
import { cursorAt, decodeCursor, toPage, type KeysetRow } from '../pagination.js';
import { notFound, ProblemError } from '../problems.js';
import type { AgentRules } from '../../lib/agent-rules.js';
import type { AgentTrigger } from '../../lib/agent-triggers.js';
import { requireOrgRole } from './org-access.js';
import { modelRefusal, type SpendPolicy } from './quota.js';
import { DEFAULT_RESOURCE_CAPS, requireBelowCap, type ResourceCaps } from './caps.js';

export type BusyPolicy = 'queue' | 'reject' | 'interrupt';

export interface AgentFields extends AgentRules {
  name: string;
  model: string;
  instructions: string;
  temperature: number;
  maxOutputTokens: number;
  maxSteps: number;
  allowedTools: string[];
  approvalTools: string[];
  runTokenBudget: number | null;
  busyPolicy: BusyPolicy;
  approvalTimeoutSeconds: number;
  /** The CRM connection the agent's CRM tools act on (same org); null = no CRM tools. */
  crmConnectionId: string | null;
  /** CRM webhook events that start (or message) this agent's runs, on its CRM connection. */
  triggers: AgentTrigger[];
}

export interface AgentView extends AgentFields {
  id: string;
  orgId: string;
  createdAt: string;
  updatedAt: string;
}

interface AgentRow {
  id: string;
  org_id: string;
  name: string;
  model: string;
  instructions: string;
  temperature: string;
  max_output_tokens: number;
  max_steps: number;
  allowed_tools: string[];
  approval_tools: string[];
  run_token_budget: number | null;
  busy_policy: BusyPolicy;
  approval_timeout_seconds: number;
  crm_connection_id: string | null;
  triggers: AgentTrigger[];
  status: AgentRules['status'];
  response_delay_seconds: number;
  handoff_minutes: number;
  reply_stages: AgentRules['replyStages'];
  working_hours: AgentRules['workingHours'];
  created_at: Date;
  updated_at: Date;
}

const columns = `id, org_id, name, model, instructions, temperature, max_output_tokens, max_steps, allowed_tools,
  approval_tools, run_token_budget, busy_policy, approval_timeout_seconds, crm_connection_id, triggers, status, response_delay_seconds, handoff_minutes, reply_stages, working_hours, created_at, updated_at`;

/** API field → column; the only columns a write may touch. */
const writable: Record<keyof AgentFields, string> = {
  name: 'name',
  model: 'model',
  instructions: 'instructions',
  temperature: 'temperature',
  maxOutputTokens: 'max_output_tokens',
  maxSteps: 'max_steps',
  allowedTools: 'allowed_tools',
  approvalTools: 'approval_tools',
  runTokenBudget: 'run_token_budget',
  busyPolicy: 'busy_policy',
  approvalTimeoutSeconds: 'approval_timeout_seconds',
  crmConnectionId: 'crm_connection_id',
  triggers: 'triggers',
  status: 'status',
  responseDelaySeconds: 'response_delay_seconds',
  handoffMinutes: 'handoff_minutes',
  replyStages: 'reply_stages',
  workingHours: 'working_hours',
};

/** jsonb columns take their value as JSON text (pg would send an array as a Postgres array). */
const toParam = (key: keyof AgentFields, value: unknown) => (key === 'triggers' || ((key === 'replyStages' || key === 'workingHours') && value !== null) ? JSON.stringify(value) : value);

function requireApprovalSubset(allowed: string[], approval: string[]): void {
  const outside = approval.filter((tool) => !allowed.includes(tool));
  if (outside.length > 0) {
    throw new ProblemError('validation-error', `approvalTools must be a subset of allowedTools; not allowed: ${outside.join(', ')}.`, [
      { path: 'body.approvalTools', message: 'must be a subset of allowedTools' },
    ]);
  }
}

/** Triggers act on the agent's CRM connection: without one they could never fire. */
function requireConnectionForTriggers(triggers: readonly unknown[], connectionId: string | null | undefined): void {
  if (triggers.length > 0 && !connectionId) {
    throw new ProblemError('validation-error', 'Triggers act on the agent\'s CRM connection: set crmConnectionId, or remove the triggers.', [
      { path: 'body.triggers', message: 'requires crmConnectionId' },
    ]);
  }
}

/** A connection of another org (or none) is refused here rather than by the foreign key's error. */
async function requireOwnConnection(tx: Tx, orgId: string, connectionId: string | null | undefined): Promise<void> {
  if (!connectionId) return;
  const { rowCount } = await tx.query(`select 1 from public.crm_connections where id = $1 and org_id = $2`, [connectionId, orgId]);
  if (rowCount !== 1) {
    throw new ProblemError('validation-error', 'crmConnectionId does not name a CRM connection of this organization.', [
      { path: 'body.crmConnectionId', message: 'unknown CRM connection' },
    ]);
  }
}

/**
 * Reply stages name stages of the agent's CRM connection as the last sync saw its pipelines
 * (Kommo statuses, HubSpot deal stages): an unknown one would silently never match.
 */
async function requireKnownStages(tx: Tx, orgId: string, stages: AgentFields['replyStages'] | undefined, connectionId: string | null): Promise<void> {
  if (!stages) return;
  if (!connectionId) {
    throw new ProblemError('validation-error', "Reply stages are stages of the agent's CRM connection: set crmConnectionId, or remove replyStages.", [
      { path: 'body.replyStages', message: 'requires crmConnectionId' },
    ]);
  }
  const { rows } = await tx.query<{ pipeline_id: string; stage_id: string }>(
    `select p.external_id as pipeline_id, s.value->>'id' as stage_id
       from public.crm_records p,
            jsonb_array_elements(coalesce(p.properties->'_embedded'->'statuses', p.properties->'stages', '[]'::jsonb)) s
      where p.org_id = $1 and p.connection_id = $2 and p.object_type = 'pipelines' and p.deleted_at is null`,
    [orgId, connectionId],
  );
  const errors = stages.flatMap((stage, i) => {
    const known = rows.some((r) => r.stage_id === stage.stageId && (stage.pipelineId === undefined || r.pipeline_id === stage.pipelineId));
    if (known) return [];
    const pipelineKnown = stage.pipelineId === undefined || rows.some((r) => r.pipeline_id === stage.pipelineId);
    return [pipelineKnown ? { path: `body.replyStages.${i}.stageId`, message: 'unknown stage' } : { path: `body.replyStages.${i}.pipelineId`, message: 'unknown pipeline' }];
  });
  if (errors.length > 0) {
    const hint = rows.length === 0 ? ' No pipelines of this connection are known yet: sync it first.' : '';
    throw new ProblemError('validation-error', `replyStages names stages the CRM connection does not have.${hint}`, errors);
  }
}

function toView(row: AgentRow): AgentView {
  return {
    id: row.id,
    orgId: row.org_id,
    name: row.name,
    model: row.model,
    instructions: row.instructions,
    temperature: Number(row.temperature),
    maxOutputTokens: row.max_output_tokens,
    maxSteps: row.max_steps,
    allowedTools: row.allowed_tools,
    approvalTools: row.approval_tools,
    runTokenBudget: row.run_token_budget,
    busyPolicy: row.busy_policy,
    approvalTimeoutSeconds: row.approval_timeout_seconds,
    crmConnectionId: row.crm_connection_id,
    triggers: row.triggers,
    status: row.status,
    responseDelaySeconds: row.response_delay_seconds,
    handoffMinutes: row.handoff_minutes,
    replyStages: row.reply_stages,
    workingHours: row.working_hours,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

/** A model outside the operator's catalog or the org's allow-list is a 400 on `model`. */
async function requireAllowedModel(tx: Tx, policy: SpendPolicy | undefined, orgId: string, model: string | undefined): Promise<void> {
  if (model === undefined || !policy) return;
  const refusal = await modelRefusal(tx, policy, orgId, model);
  if (refusal) throw new ProblemError('validation-error', `body.model: ${model} ${refusal}`, [{ path: 'body.model', message: `${model} ${refusal}` }]);
}

export function createAgentService(deps: { pool: pg.Pool; spend?: SpendPolicy; caps?: ResourceCaps }) {
  const caps = deps.caps ?? DEFAULT_RESOURCE_CAPS;
  const { pool } = deps;

  async function create(principal: Principal, orgId: string, fields: Partial<AgentFields> & Pick<AgentFields, 'name' | 'model'>): Promise<AgentView> {
    return withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      await requireAllowedModel(tx, deps.spend, orgId, fields.model);
      await requireBelowCap(tx, caps, 'agentsPerOrg', orgId);
      requireApprovalSubset(fields.allowedTools ?? [], fields.approvalTools ?? []);
      requireConnectionForTriggers(fields.triggers ?? [], fields.crmConnectionId);
      await requireOwnConnection(tx, orgId, fields.crmConnectionId);
      await requireKnownStages(tx, orgId, fields.replyStages, fields.crmConnectionId ?? null);
      const entries = Object.entries(fields).filter(([, v]) => v !== undefined) as [keyof AgentFields, unknown][];
      const names = ['org_id', ...entries.map(([k]) => writable[k])];
      const values = [orgId, ...entries.map(([k, v]) => toParam(k, v))];
      const { rows } = await tx.query<AgentRow>(
        `insert into public.agents (${names.join(', ')}) values (${names.map((_, i) => `$${i + 1}`).join(', ')}) returning ${columns}`,
        values,
      );
      return toView(rows[0]!);
    });
  }

  async function get(principal: Principal, orgId: string, agentId: string): Promise<AgentView> {
    return withPrincipal(pool, principal, async (tx) => {
      const { rows } = await tx.query<AgentRow>(`select ${columns} from public.agents where id = $1 and org_id = $2`, [agentId, orgId]);
      if (!rows[0]) throw notFound('Agent');
      return toView(rows[0]);
    });
  }

  async function list(principal: Principal, orgId: string, page: { limit: number; cursor?: string | undefined }) {
    const after = decodeCursor(page.cursor);
    return withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'member');
      const { rows } = await tx.query<AgentRow & KeysetRow>(
        `select ${columns}, ${cursorAt('created_at')} from public.agents
          where org_id = $1 and ($2::timestamptz is null or (created_at, id) < ($2::timestamptz, $3::uuid))
          order by created_at desc, id desc limit $4`,
        [orgId, after?.createdAt ?? null, after?.id ?? null, page.limit + 1],
      );
      return toPage(rows, page.limit, toView);
    });
  }

  async function update(principal: Principal, orgId: string, agentId: string, fields: Partial<AgentFields>): Promise<AgentView> {
    return withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      const entries = Object.entries(fields).filter(([, v]) => v !== undefined) as [keyof AgentFields, unknown][];
      const current = await tx.query<AgentRow>(`select ${columns} from public.agents where id = $1 and org_id = $2 for update`, [agentId, orgId]);
      if (!current.rows[0]) throw notFound('Agent');
      if (entries.length === 0) return toView(current.rows[0]);
      await requireAllowedModel(tx, deps.spend, orgId, fields.model);
      requireApprovalSubset(fields.allowedTools ?? current.rows[0].allowed_tools, fields.approvalTools ?? current.rows[0].approval_tools);
      requireConnectionForTriggers(fields.triggers ?? current.rows[0].triggers, fields.crmConnectionId !== undefined ? fields.crmConnectionId : current.rows[0].crm_connection_id);
      await requireOwnConnection(tx, orgId, fields.crmConnectionId);
      const connectionId = fields.crmConnectionId !== undefined ? fields.crmConnectionId : current.rows[0].crm_connection_id;
      // Checked when the stages or the connection change (unbinding the connection keeps no stale scope).
      if (fields.replyStages !== undefined || fields.crmConnectionId !== undefined) {
        await requireKnownStages(tx, orgId, fields.replyStages !== undefined ? fields.replyStages : current.rows[0].reply_stages, connectionId);
      }
      const sets = entries.map(([k], i) => `${writable[k]} = $${i + 3}`);
      const { rows } = await tx.query<AgentRow>(
        `update public.agents set ${sets.join(', ')} where id = $1 and org_id = $2 returning ${columns}`,
        [agentId, orgId, ...entries.map(([k, v]) => toParam(k, v))],
      );
      return toView(rows[0]!);
    });
  }

  async function remove(principal: Principal, orgId: string, agentId: string): Promise<void> {
    await withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      const deleted = await tx.query(`delete from public.agents where id = $1 and org_id = $2`, [agentId, orgId]);
      if (deleted.rowCount !== 1) throw notFound('Agent');
    });
  }

  return { create, get, list, update, remove };
}

export type AgentService = ReturnType<typeof createAgentService>;
