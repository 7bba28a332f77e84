import { z } from 'zod';

/** USD per million tokens. Providers price input and output separately. */
export interface ModelPrice {
  inputPerMillion: number;
  outputPerMillion: number;
}

/** Model id (exact) or a prefix ending in `*` → price. `*` alone is the fallback. */
export type PriceTable = Record<string, ModelPrice>;

export const priceTableSchema = z.record(
  z.string().min(1),
  z.strictObject({ inputPerMillion: z.number().nonnegative(), outputPerMillion: z.number().nonnegative() }),
);

/**
 * What a model missing from the table costs: a frontier model's list price, so an unknown or
 * misspelt model is over-metered rather than free (the spend ceilings count its cost). A `*` entry
 * in LLM_PRICES replaces it.
 */
export const UNKNOWN_MODEL_PRICE: ModelPrice = { inputPerMillion: 15, outputPerMillion: 75 };

/**
 * Published list prices at the time of writing; deployments override them with LLM_PRICES (JSON
 * of this shape) because providers change prices and OpenRouter adds its margin. Unknown models
 * are metered at `*` (UNKNOWN_MODEL_PRICE unless overridden), never at 0; the sandbox is free.
 */
export const DEFAULT_PRICES: PriceTable = {
  'openai/gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 },
  'openai/gpt-4o': { inputPerMillion: 2.5, outputPerMillion: 10 },
  'anthropic/claude-3.5-haiku': { inputPerMillion: 0.8, outputPerMillion: 4 },
  'sandbox/*': { inputPerMillion: 0, outputPerMillion: 0 },
  '*': UNKNOWN_MODEL_PRICE,
};

export function parsePriceTable(json: string | undefined): PriceTable {
  if (!json) return DEFAULT_PRICES;
  return { ...DEFAULT_PRICES, ...priceTableSchema.parse(JSON.parse(json)) };
}

export function priceFor(table: PriceTable, model: string): ModelPrice {
  const exact = table[model];
  if (exact) return exact;
  let best: { length: number; price: ModelPrice } | undefined;
  for (const [pattern, price] of Object.entries(table)) {
    if (pattern.endsWith('*') && model.startsWith(pattern.slice(0, -1)) && (!best || pattern.length > best.length)) {
      best = { length: pattern.length, price };
    }
  }
  return best?.price ?? UNKNOWN_MODEL_PRICE;
}

/** Cost in USD, rounded to the ledger's 6 decimals. */
export function costOf(table: PriceTable, model: string, usage: { inputTokens: number; outputTokens: number }): number {
  const price = priceFor(table, model);
  const cost = (usage.inputTokens * price.inputPerMillion + usage.outputTokens * price.outputPerMillion) / 1_000_000;
  return Math.round(cost * 1_000_000) / 1_000_000;
}
