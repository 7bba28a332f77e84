import { ScheduleNotFoundError, ScheduleOverlapPolicy, WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type pg from 'pg';
import { z } from 'zod';
import { ConnectionUnavailableError, CredentialStore, loadConnection, storeTokens } from '../../integrations/crm/credentials.js';
import { CrmError } from '../../integrations/crm/http.js';
import { hubspotAuthorizeUrl, HUBSPOT_SCOPES } from '../../integrations/crm/hubspot.js';
import { kommoAuthorizeUrl } from '../../integrations/crm/kommo.js';
import { requestToken, type CrmSettings } from '../../integrations/crm/settings.js';
import type { CrmProvider } from '../../integrations/crm/types.js';
import { randomToken, sha256Hex, type Keyring } from '../../lib/crypto.js';
import { withPrincipal, type Tx } from '../../lib/db.js';
import { assertPublicUrl, UnsafeUrlError } from '../../lib/ssrf.js';
import type { Principal } from '../../lib/principal.js';
import { CRM_SYNC_TASK_QUEUE, crmSyncScheduleId, crmSyncWorkflowId } from '../../workflows/crm-sync-ids.js';
import type { crmSync } from '../../workflows/crm-sync.js';
import { OrgIdSearchAttribute } from '../../workflows/search-attributes.js';
import { decodeCursor, toPage } from '../pagination.js';
import { notFound, ProblemError } from '../problems.js';
import { requireOrgRole } from './org-access.js';
import { callTemporal, DEFAULT_TEMPORAL_CALL_DEADLINE_MS } from './temporal-calls.js';

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

export const OAUTH_STATE_TTL_MINUTES = 15;

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

interface ConnectionRow {
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

const columns = `id, org_id, provider, name, auth_kind, status, external_account_id, last_error, schedule, created_at, updated_at`;

function toView(row: ConnectionRow): ConnectionView {
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

export type CreateConnectionInput = {
  provider: CrmProvider;
  name: string;
  auth: { kind: 'oauth' } | { kind: 'token'; token: string; accountUrl?: string | undefined };
};

export interface CreatedConnection {
  connection: ConnectionView;
  /** OAuth: where to send the admin's browser. */
  authorizeUrl: string | null;
  /** Shown once: the URL to configure in the CRM's webhook settings (Kommo's carries our secret). */
  webhookUrl: string;
}

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

export interface WebhookDeliveryView {
  dedupeKey: string;
  kind: string;
  objectType: string;
  externalId: string;
  change: 'upsert' | 'delete';
  receivedAt: string;
  processedAt: string | null;
}

export function createCrmService(deps: CrmServiceDeps) {
  const { pool, temporal, keyring, settings } = deps;
  const taskQueue = deps.syncTaskQueue ?? CRM_SYNC_TASK_QUEUE;
  const temporalDeadlineMs = deps.temporalDeadlineMs ?? DEFAULT_TEMPORAL_CALL_DEADLINE_MS;
  const credentials = new CredentialStore({ pool, keyring, settings, ...(deps.fetch ? { fetch: deps.fetch } : {}) });

  async function getRow(tx: Tx, orgId: string, connectionId: string): Promise<ConnectionRow> {
    const { rows } = await tx.query<ConnectionRow>(`select ${columns} from public.crm_connections where id = $1 and org_id = $2`, [connectionId, orgId]);
    if (!rows[0]) throw notFound('CRM connection');
    return rows[0];
  }

  function webhookUrl(provider: CrmProvider, connectionId: string, secret: string | null): string {
    const base = settings.publicUrl ?? 'http://127.0.0.1:3000';
    const url = new URL(`/v1/webhooks/crm/${provider}/${connectionId}`, base);
    if (secret) url.searchParams.set('secret', secret);
    return url.toString();
  }

  async function create(principal: Principal, orgId: string, input: CreateConnectionInput): Promise<CreatedConnection> {
    if (input.auth.kind === 'oauth' && !settings[input.provider].app) {
      throw new ProblemError('validation-error', `OAuth for ${input.provider} is not configured on this server; connect with a token instead.`);
    }
    if (input.provider === 'kommo' && input.auth.kind === 'token' && !input.auth.accountUrl) {
      throw new ProblemError('validation-error', 'A Kommo long-lived token needs accountUrl (https://<subdomain>.kommo.com).', [{ path: 'body.auth.accountUrl', message: 'is required for Kommo' }]);
    }
    const apiBaseUrl = input.auth.kind === 'token' && input.provider === 'kommo' ? await kommoBaseUrl(input.auth.accountUrl!) : input.provider === 'hubspot' ? settings.hubspot.apiBaseUrl : null;
    const webhookSecret = input.provider === 'kommo' ? randomToken(24) : null;
    const state = input.auth.kind === 'oauth' ? randomToken(32) : null;
    const connection = await withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      const { rows } = await tx.query<ConnectionRow>(
        `insert into public.crm_connections (org_id, provider, name, auth_kind, status, api_base_url, webhook_secret_hash, created_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning ${columns}`,
        [
          orgId,
          input.provider,
          input.name,
          input.auth.kind,
          input.auth.kind === 'token' ? 'active' : 'pending',
          apiBaseUrl,
          webhookSecret ? sha256Hex(webhookSecret) : null,
          principal.kind === 'user' ? principal.userId : null,
        ],
      );
      const row = rows[0]!;
      if (input.auth.kind === 'token') {
        await storeTokens(tx, keyring, { orgId, connectionId: row.id }, { accessToken: input.auth.token, refreshToken: null, expiresAt: null });
      }
      if (state) {
        await tx.query(
          `insert into public.oauth_states (state_hash, org_id, connection_id, created_by, expires_at)
           values ($1, $2, $3, $4, now() + make_interval(mins => $5))`,
          [sha256Hex(state), orgId, row.id, principal.kind === 'user' ? principal.userId : null, OAUTH_STATE_TTL_MINUTES],
        );
      }
      return toView(row);
    });
    let authorizeUrl: string | null = null;
    if (state) {
      authorizeUrl =
        input.provider === 'kommo'
          ? kommoAuthorizeUrl({ authorizeUrl: settings.kommo.authorizeUrl, clientId: settings.kommo.app!.clientId, state })
          : hubspotAuthorizeUrl({ authorizeUrl: settings.hubspot.authorizeUrl, clientId: settings.hubspot.app!.clientId, redirectUri: settings.hubspot.app!.redirectUri, state, scopes: HUBSPOT_SCOPES });
    }
    return { connection, authorizeUrl, webhookUrl: webhookUrl(input.provider, connection.id, webhookSecret) };
  }

  async function kommoBaseUrl(accountUrl: string): Promise<string> {
    let url: URL;
    try {
      url = new URL(accountUrl);
    } catch {
      throw new ProblemError('validation-error', 'accountUrl must be a URL like https://example.kommo.com');
    }
    if (url.protocol !== `${settings.kommo.scheme}:` || !settings.kommo.accountHostPattern.test(url.host)) {
      throw new ProblemError('validation-error', 'accountUrl must be your Kommo or amoCRM account address, like https://example.kommo.com', [{ path: 'body.auth.accountUrl', message: 'is not a Kommo account host' }]);
    }
    await assertCustomerUrl(url.toString(), 'body.auth.accountUrl');
    return `${url.protocol}//${url.host}`;
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

  /**
   * The OAuth redirect target. Unauthenticated: the single-use `state` proves the flow was
   * started by an admin of the org, and only then does the request act, as that org's worker.
   */
  async function completeOAuth(provider: CrmProvider, query: { code: string; state: string; referer?: string | undefined }): Promise<ConnectionView> {
    const { rows } = await pool.query<{ org_id: string; connection_id: string; expired: boolean }>(
      `select org_id, connection_id, expired from private.take_crm_oauth_state($1)`,
      [sha256Hex(query.state)],
    );
    const taken = rows[0];
    if (!taken || taken.expired) throw new ProblemError('validation-error', 'The authorization link is invalid or has expired; start connecting again.');
    const worker: Principal = { kind: 'worker', orgId: taken.org_id };
    const info = await withPrincipal(pool, worker, (tx) => loadConnection(tx, taken.org_id, taken.connection_id));
    if (!info || info.provider !== provider) throw new ProblemError('validation-error', 'The authorization does not belong to a connection of this provider.');
    let apiBaseUrl = info.apiBaseUrl;
    if (provider === 'kommo') {
      // Kommo names the account host in `referer`; never call a host outside Kommo's domains.
      if (!query.referer || !settings.kommo.accountHostPattern.test(query.referer)) throw new ProblemError('validation-error', 'The callback did not name a Kommo account host.');
      apiBaseUrl = `${settings.kommo.scheme}://${query.referer}`;
      await assertCustomerUrl(apiBaseUrl, 'querystring.referer');
    }
    let tokens;
    try {
      tokens = await requestToken(settings, { provider, apiBaseUrl }, { kind: 'authorization_code', code: query.code });
    } catch (err) {
      if (err instanceof CrmError && !err.retryable) throw new ProblemError('validation-error', `The CRM refused the authorization code: ${err.message}`);
      throw new ProblemError('service-unavailable', 'The CRM did not answer; try connecting again.');
    }
    return withPrincipal(pool, worker, async (tx) => {
      await storeTokens(tx, keyring, { orgId: taken.org_id, connectionId: taken.connection_id }, tokens);
      const { rows: updated } = await tx.query<ConnectionRow>(
        `update public.crm_connections set status = 'active', last_error = null, api_base_url = $3, external_account_id = coalesce($4, external_account_id)
          where id = $1 and org_id = $2 returning ${columns}`,
        [taken.connection_id, taken.org_id, apiBaseUrl, tokens.accountId ?? query.referer ?? null],
      );
      return toView(updated[0]!);
    });
  }

  async function list(principal: Principal, orgId: string): Promise<ConnectionView[]> {
    return withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'member');
      const { rows } = await tx.query<ConnectionRow>(`select ${columns} from public.crm_connections where org_id = $1 order by created_at, id limit 200`, [orgId]);
      return rows.map(toView);
    });
  }

  async function get(principal: Principal, orgId: string, connectionId: string): Promise<ConnectionView> {
    return withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'member');
      return toView(await getRow(tx, orgId, connectionId));
    });
  }

  async function rename(principal: Principal, orgId: string, connectionId: string, patch: { name?: string | undefined }): Promise<ConnectionView> {
    return withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      await getRow(tx, orgId, connectionId);
      const { rows } = await tx.query<ConnectionRow>(
        `update public.crm_connections set name = coalesce($3, name) where id = $1 and org_id = $2 returning ${columns}`,
        [connectionId, orgId, patch.name ?? null],
      );
      return toView(rows[0]!);
    });
  }

  /**
   * Deletes the Temporal schedule, then the row, each on its own: no transaction is open while
   * Temporal is called. The schedule goes first: if deleting it fails, the connection (and its
   * credentials) stay and the admin can retry, instead of a schedule that fires for a connection
   * that is gone. A crash between the two leaves a connection without a schedule, which a
   * retried DELETE finishes.
   */
  async function remove(principal: Principal, orgId: string, connectionId: string): Promise<void> {
    await withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      await getRow(tx, orgId, connectionId);
    });
    await callTemporal(
      temporal,
      temporalDeadlineMs,
      async () => {
        try {
          await temporal.schedule.getHandle(crmSyncScheduleId(connectionId)).delete();
        } catch (err) {
          if (!(err instanceof ScheduleNotFoundError)) throw err;
        }
      },
      'Temporal did not answer in time; the connection was not deleted. Retry.',
    );
    await withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      // Credentials, states, records, runs and checkpoints go with the row (on delete cascade).
      // Deleted by a concurrent request meanwhile: the outcome the caller asked for (the audit
      // trigger records only the deletion that happened).
      await tx.query(`delete from public.crm_connections where id = $1 and org_id = $2`, [connectionId, orgId]);
    });
  }

  async function test(principal: Principal, orgId: string, connectionId: string): Promise<{ ok: boolean; accountId: string | null; error: { type: string; message: string } | null }> {
    await withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      await getRow(tx, orgId, connectionId);
    });
    let result: { ok: boolean; accountId: string | null; error: { type: string; message: string } | null };
    try {
      const { adapter } = await credentials.open({ orgId, connectionId }, { principal, governed: false, requireActive: false });
      const { accountId } = await adapter.whoAmI();
      result = { ok: true, accountId, error: null };
    } catch (err) {
      if (err instanceof ConnectionUnavailableError) result = { ok: false, accountId: null, error: { type: err.reason, message: err.message } };
      else if (err instanceof CrmError) result = { ok: false, accountId: null, error: { type: `crm-${err.kind}`, message: err.message } };
      else throw err;
    }
    await withPrincipal(pool, principal, (tx) =>
      tx.query(
        `update public.crm_connections
            set status = case when $3 then 'active' when status = 'pending' then 'pending' else 'error' end,
                external_account_id = coalesce($4, external_account_id), last_error = $5
          where id = $1 and org_id = $2`,
        [connectionId, orgId, result.ok, result.accountId, result.error ? JSON.stringify(result.error) : null],
      ),
    );
    return result;
  }

  /** The Temporal schedule that `schedule` describes, created or replaced. */
  async function applySchedule(orgId: string, connectionId: string, schedule: ScheduleInput): Promise<void> {
    const spec = schedule.intervalSeconds
      ? { intervals: [{ every: `${schedule.intervalSeconds} seconds` as const }] }
      : { cronExpressions: [schedule.cron!], ...(schedule.timeZone ? { timezone: schedule.timeZone } : {}) };
    const action = {
      type: 'startWorkflow' as const,
      workflowType: 'crmSync',
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
          temporal.workflow.start<typeof crmSync>('crmSync', {
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
      const { rows } = await tx.query<{ id: string; created_at: Date; mode: SyncRunView['mode']; trigger: string; status: SyncRunView['status']; added: number; updated: number; deleted: number; failed: number; pages: number; progress: Record<string, unknown>; error: SyncRunView['error']; finished_at: Date | null }>(
        `select id, started_at as created_at, mode, trigger, status, added, updated, deleted, failed, pages, progress, error, finished_at
           from public.crm_sync_runs
          where org_id = $1 and connection_id = $2 and ($3::timestamptz is null or (started_at, id) < ($3, $4::uuid))
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

  /**
   * The connection's most recent webhook deliveries, newest first: what the CRM sent, when, and
   * whether it was processed. Admins only (the rows say which records changed and when). A
   * delivery left unprocessed failed and waits for the CRM's redelivery.
   */
  async function listWebhookDeliveries(principal: Principal, orgId: string, connectionId: string, query: { limit: number }): Promise<{ items: WebhookDeliveryView[] }> {
    return withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      await getRow(tx, orgId, connectionId);
      const { rows } = await tx.query<{ dedupe_key: string; kind: string; object_type: string; external_id: string; change: 'upsert' | 'delete'; received_at: Date; processed_at: Date | null }>(
        `select dedupe_key, kind, object_type, external_id, change, received_at, processed_at
           from public.crm_webhook_deliveries
          where org_id = $1 and connection_id = $2
          order by received_at desc, dedupe_key desc limit $3`,
        [orgId, connectionId, query.limit],
      );
      return {
        items: rows.map((r) => ({
          dedupeKey: r.dedupe_key,
          kind: r.kind,
          objectType: r.object_type,
          externalId: r.external_id,
          change: r.change,
          receivedAt: r.received_at.toISOString(),
          processedAt: r.processed_at?.toISOString() ?? null,
        })),
      };
    });
  }

  async function listRecords(principal: Principal, orgId: string, query: { type: string; q?: string | undefined; connectionId?: string | undefined; includeDeleted?: boolean | undefined; limit: number; cursor?: string | undefined }) {
    let after: { c: string; e: string } | null = null;
    if (query.cursor) {
      const parsed = z.object({ c: z.uuid(), e: z.string().max(100) }).safeParse((() => { try { return JSON.parse(Buffer.from(query.cursor, 'base64url').toString('utf8')) as unknown; } catch { return null; } })());
      if (!parsed.success) throw new ProblemError('validation-error', 'The cursor is invalid; use the nextCursor of a previous page.', [{ path: 'querystring.cursor', message: 'is invalid' }]);
      after = parsed.data;
    }
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
        nextCursor: rows.length > query.limit && last ? Buffer.from(JSON.stringify({ c: last.connection_id, e: last.external_id })).toString('base64url') : null,
      };
    });
  }

  return { create, completeOAuth, list, get, rename, remove, test, putSchedule, startSync, listSyncs, listWebhookDeliveries, listRecords };
}

export type CrmService = ReturnType<typeof createCrmService>;
