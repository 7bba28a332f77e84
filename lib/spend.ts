import type { PriceTable } from './pricing.js';

/**
 * The operator's spend ceilings (issue 12, item 4). Every org has a daily token quota and every
 * agent a per-run token budget, by default: an org or agent that sets none gets the operator's
 * default, and no org can set more than the operator's maximum. See docs/security.md, "Spend".
 */
export interface SpendSettings {
  /** Tokens (input + output) an org may use per UTC day unless it sets its own quota. */
  orgDailyTokenQuotaDefault: number;
  /** The most an org admin may set as the org's daily quota. */
  orgDailyTokenQuotaMax: number;
  /** Tokens one run may use unless its agent sets its own budget. */
  runTokenBudgetDefault: number;
}

export const DEFAULT_SPEND_SETTINGS: SpendSettings = {
  orgDailyTokenQuotaDefault: 2_000_000,
  orgDailyTokenQuotaMax: 100_000_000,
  runTokenBudgetDefault: 200_000,
};

/** Model ids, or prefixes ending in `*`; `*` alone allows every model. */
export type ModelPatterns = readonly string[];

export function modelMatches(patterns: ModelPatterns, model: string): boolean {
  return patterns.some((pattern) => (pattern.endsWith('*') ? model.startsWith(pattern.slice(0, -1)) : model === pattern));
}

/**
 * The models agents may use on this installation: LLM_MODELS when the operator lists them, else
 * every model the price table knows by name or prefix (the `*` fallback price is for metering a
 * model nobody listed, not a licence to use it).
 */
export function operatorModels(listed: readonly string[] | undefined, prices: PriceTable): ModelPatterns {
  if (listed && listed.length > 0) return listed;
  return Object.keys(prices).filter((pattern) => pattern !== '*');
}
