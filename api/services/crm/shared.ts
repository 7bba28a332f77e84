import type { Client } from '@temporalio/client';
import type pg from 'pg';
import { z } from 'zod';
import { CredentialStore } from '../../../integrations/crm/credentials.js';
import type { CrmSettings } from '../../../integrations/crm/settings.js';
import type { CrmProvider } from '../../../integrations/crm/types.js';
import type { Keyring } from '../../../lib/crypto.js';
import type { Tx } from '../../../lib/db.js';
import { assertPublicUrl, UnsafeUrlError } from '../../../lib/ssrf.js';
import { CRM_SYNC_TASK_QUEUE } from '../../../workflows/crm-sync-ids.js';
import { notFound, ProblemError } from '../../problems.js';
import { DEFAULT_TEMPORAL_CALL_DEADLINE_MS } from '../temporal-calls.js';

export interface CrmServiceDeps {
  pool: pg.Pool;
  temporal: Client;
  keyring: Keyring;
  settings: CrmSettings;
  /** Tests give each suite its own queue. */
  syncTaskQueue?: string;
  fetch?: typeof fetch;
  /** How long a schedule change or a sync start waits for Temporal (default 5 s); then 503. */
  temporalDeadlineMs?: number;
}

export interface ConnectionView {
  id: string;
  orgId: string;
  provider: CrmProvider;
  name: string;
  authKind: 'oauth' | 'token';
  status: 'pending' | 'active' | 'error' | 'revoked';
  accountId: string | null;
  lastError: { type: string; message: string } | null;
  schedule: ScheduleInput | null;
  createdAt: string;
  updatedAt: string;
}

export interface ConnectionRow {
  id: string;
  org_id: string;
  provider: CrmProvider;
  name: string;
  auth_kind: 'oauth' | 'token';
  status: ConnectionView['status'];
  external_account_id: string | null;
  last_error: ConnectionView['lastError'];
  schedule: ScheduleInput | null;
  created_at: Date;
  updated_at: Date;
}

export const columns = `id, org_id, provider, name, auth_kind, status, external_account_id, last_error, schedule, created_at, updated_at`;

export function toView(row: ConnectionRow): ConnectionView {
  return {
    id: row.id,
    orgId: row.org_id,
    provider: row.provider,
    name: row.name,
    authKind: row.auth_kind,
    status: row.status,
    accountId: row.external_account_id,
    lastError: row.last_error,
    schedule: row.schedule,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

export const scheduleInputSchema = z
  .strictObject({
    intervalSeconds: z.number().int().min(60).max(7 * 86_400).optional(),
    cron: z.string().min(9).max(100).regex(/^[0-9*/,\- ]+$/, 'five cron fields').optional(),
    timeZone: z.string().min(1).max(64).optional(),
    mode: z.enum(['incremental', 'full']).default('incremental'),
    paused: z.boolean().default(false),
  })
  .refine((s) => (s.intervalSeconds === undefined) !== (s.cron === undefined), { message: 'give exactly one of intervalSeconds or cron' })
  .refine((s) => !s.timeZone || isTimeZone(s.timeZone), { message: 'timeZone must be an IANA time zone like Europe/Berlin', path: ['timeZone'] });
export type ScheduleInput = z.infer<typeof scheduleInputSchema>;

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** What every part of the CRM service shares: its dependencies and the connection lookups. */
export function createCrmContext(deps: CrmServiceDeps) {
  const { pool, temporal, keyring, settings } = deps;
  const taskQueue = deps.syncTaskQueue ?? CRM_SYNC_TASK_QUEUE;
  const temporalDeadlineMs = deps.temporalDeadlineMs ?? DEFAULT_TEMPORAL_CALL_DEADLINE_MS;
  const credentials = new CredentialStore({ pool, keyring, settings, ...(deps.fetch ? { fetch: deps.fetch } : {}) });

  async function getRow(tx: Tx, orgId: string, connectionId: string): Promise<ConnectionRow> {
    const { rows } = await tx.query<ConnectionRow>(`select ${columns} from public.crm_connections where id = $1 and org_id = $2`, [connectionId, orgId]);
    if (!rows[0]) throw notFound('CRM connection');
    return rows[0];
  }

  /** SSRF guard at save time: the customer hears why now, not a failed sync later. */
  async function assertCustomerUrl(raw: string, path: string): Promise<void> {
    try {
      await assertPublicUrl(raw, settings.ssrf);
    } catch (err) {
      if (!(err instanceof UnsafeUrlError)) throw err;
      throw new ProblemError('validation-error', `The CRM address ${err.message}; give the public address of your account.`, [{ path, message: err.message }]);
    }
  }

  return { pool, temporal, keyring, settings, taskQueue, temporalDeadlineMs, credentials, getRow, assertCustomerUrl };
}

export type CrmContext = ReturnType<typeof createCrmContext>;
