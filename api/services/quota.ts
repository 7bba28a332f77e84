import type pg from 'pg';
import { withPrincipal, type Tx } from '../../lib/db.js';
import type { Principal } from '../../lib/principal.js';
import { modelMatches, type ModelPatterns, type SpendSettings } from '../../lib/spend.js';
import { ProblemError } from '../problems.js';
import { requireOrgRole } from './org-access.js';

/**
 * An org's spend ceiling and models, read by members and set by admins within what the operator
 * allows (lib/spend.ts): a daily token quota up to ORG_DAILY_TOKEN_QUOTA_MAX (null: the operator
 * default), and the models its agents may use, a subset of the operator's catalog (null: all).
 */
export interface SpendPolicy {
  settings: SpendSettings;
  /** The operator's model catalog; absent: any model name (metered at the fallback price). */
  models?: ModelPatterns;
}

export interface QuotaView {
  dailyTokenQuota: number;
  dailyTokenQuotaSource: 'org' | 'operator-default';
  operatorDefaultDailyTokenQuota: number;
  operatorMaxDailyTokenQuota: number;
  runTokenBudgetDefault: number;
  tokensToday: number;
  reservedTokens: number;
  allowedModels: string[] | null;
  operatorModels: string[] | null;
}

export interface QuotaUpdate {
  dailyTokenQuota?: number | null | undefined;
  allowedModels?: string[] | null | undefined;
}

/** An org's pattern is within the operator's catalog when every model it admits is admitted there. */
export function patternWithin(catalog: ModelPatterns, pattern: string): boolean {
  if (!pattern.endsWith('*')) return modelMatches(catalog, pattern);
  const prefix = pattern.slice(0, -1);
  return catalog.some((p) => p.endsWith('*') && prefix.startsWith(p.slice(0, -1)));
}

/**
 * Whether an agent of the org may use `model`: in the operator's catalog (when there is one) and
 * in the org's allow-list (when it has one). Returns the reason when not, for a 400 on `model`.
 */
export async function modelRefusal(tx: Tx, policy: SpendPolicy, orgId: string, model: string): Promise<string | undefined> {
  if (policy.models && !modelMatches(policy.models, model)) return `is not a model this service offers (${policy.models.join(', ')})`;
  const { rows } = await tx.query<{ allowed_models: string[] | null }>(`select allowed_models from public.organizations where id = $1`, [orgId]);
  const allowed = rows[0]?.allowed_models;
  if (allowed && !modelMatches(allowed, model)) return `is not among the models this organization allows (${allowed.join(', ')})`;
  return undefined;
}

export function createQuotaService(deps: { pool: pg.Pool; policy: SpendPolicy }) {
  const { settings, models } = deps.policy;

  async function load(tx: Tx, orgId: string): Promise<QuotaView> {
    const { rows } = await tx.query<{ daily_token_quota: string | null; allowed_models: string[] | null; tokens_today: string; reserved: string }>(
      `select o.daily_token_quota, o.allowed_models,
              coalesce((select sum(u.input_tokens + u.output_tokens) from public.usage_daily u
                         where u.org_id = o.id and u.day = (now() at time zone 'utc')::date), 0) as tokens_today,
              coalesce((select sum(r.reserved_tokens) from public.agent_runs r where r.org_id = o.id and r.reserved_tokens > 0), 0) as reserved
         from public.organizations o where o.id = $1`,
      [orgId],
    );
    const row = rows[0]!;
    return {
      dailyTokenQuota: row.daily_token_quota === null ? settings.orgDailyTokenQuotaDefault : Number(row.daily_token_quota),
      dailyTokenQuotaSource: row.daily_token_quota === null ? 'operator-default' : 'org',
      operatorDefaultDailyTokenQuota: settings.orgDailyTokenQuotaDefault,
      operatorMaxDailyTokenQuota: settings.orgDailyTokenQuotaMax,
      runTokenBudgetDefault: settings.runTokenBudgetDefault,
      tokensToday: Number(row.tokens_today),
      reservedTokens: Number(row.reserved),
      allowedModels: row.allowed_models,
      operatorModels: models ? [...models] : null,
    };
  }

  async function getQuota(principal: Principal, orgId: string): Promise<QuotaView> {
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'member');
      return load(tx, orgId);
    });
  }

  async function setQuota(principal: Principal, orgId: string, update: QuotaUpdate): Promise<QuotaView> {
    const errors: Array<{ path: string; message: string }> = [];
    if (typeof update.dailyTokenQuota === 'number' && update.dailyTokenQuota > settings.orgDailyTokenQuotaMax) {
      errors.push({ path: 'body.dailyTokenQuota', message: `must be at most ${settings.orgDailyTokenQuotaMax} (the operator's maximum)` });
    }
    for (const [i, pattern] of (update.allowedModels ?? []).entries()) {
      if (models && !patternWithin(models, pattern)) errors.push({ path: `body.allowedModels.${i}`, message: `${pattern} is not within the models this service offers` });
    }
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      if (errors.length > 0) throw new ProblemError('validation-error', errors.map((e) => `${e.path}: ${e.message}`).join('; '), errors);
      await tx.query(
        `update public.organizations
            set daily_token_quota = case when $2 then $3::bigint else daily_token_quota end,
                allowed_models = case when $4 then $5::text[] else allowed_models end
          where id = $1`,
        [orgId, update.dailyTokenQuota !== undefined, update.dailyTokenQuota ?? null, update.allowedModels !== undefined, update.allowedModels ?? null],
      );
      return load(tx, orgId);
    });
  }

  return { getQuota, setQuota };
}

export type QuotaService = ReturnType<typeof createQuotaService>;
