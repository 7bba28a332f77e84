import type pg from 'pg';
import { withPrincipal } from '../../lib/db.js';
import type { Principal } from '../../lib/principal.js';
import { ProblemError } from '../problems.js';
import { requireOrgRole } from './org-access.js';

export interface UsageDay {
  day: string;
  runs: number;
  llmCalls: number;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

const MAX_RANGE_DAYS = 366;

export function createUsageService(deps: { pool: pg.Pool }) {
  /** Daily usage between `from` and `to` (inclusive, UTC days), with totals. */
  async function getUsage(principal: Principal, orgId: string, from: string, to: string) {
    const days = (Date.parse(to) - Date.parse(from)) / 86_400_000;
    if (days < 0) throw new ProblemError('validation-error', '`from` must not be after `to`.', [{ path: 'querystring.from', message: 'is after to' }]);
    if (days >= MAX_RANGE_DAYS) {
      throw new ProblemError('validation-error', `Ask for at most ${MAX_RANGE_DAYS} days at a time.`, [{ path: 'querystring.to', message: 'range too long' }]);
    }
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'member');
      const { rows } = await tx.query<{ day: string; runs: number; llm_calls: number; input_tokens: string; output_tokens: string; cost_usd: string }>(
        // A day is counted in up to 8 shards (see the usage_daily_shards migration).
        `select to_char(day, 'YYYY-MM-DD') as day, sum(runs)::int as runs, sum(llm_calls)::int as llm_calls,
                sum(input_tokens) as input_tokens, sum(output_tokens) as output_tokens, sum(cost_usd) as cost_usd
           from public.usage_daily where org_id = $1 and day between $2::date and $3::date
          group by day order by day`,
        [orgId, from, to],
      );
      const items: UsageDay[] = rows.map((r) => ({
        day: r.day,
        runs: r.runs,
        llmCalls: r.llm_calls,
        inputTokens: Number(r.input_tokens),
        outputTokens: Number(r.output_tokens),
        costUsd: Number(r.cost_usd),
      }));
      const totals = items.reduce(
        (t, d) => ({
          runs: t.runs + d.runs,
          llmCalls: t.llmCalls + d.llmCalls,
          inputTokens: t.inputTokens + d.inputTokens,
          outputTokens: t.outputTokens + d.outputTokens,
          costUsd: Math.round((t.costUsd + d.costUsd) * 1e6) / 1e6,
        }),
        { runs: 0, llmCalls: 0, inputTokens: 0, outputTokens: 0, costUsd: 0 },
      );
      return { from, to, items, totals };
    });
  }
  return { getUsage };
}

export type UsageService = ReturnType<typeof createUsageService>;
