import { describe, expect, it } from 'vitest';
import { costOf, DEFAULT_PRICES, parsePriceTable, priceFor, UNKNOWN_MODEL_PRICE } from '../../lib/pricing.js';

describe('LLM price table', () => {
  it('prices a call from input and output tokens, per million', () => {
    expect(costOf(DEFAULT_PRICES, 'openai/gpt-4o-mini', { inputTokens: 1_000_000, outputTokens: 500_000 })).toBe(0.45);
  });

  it('matches exact ids first, then the longest prefix pattern', () => {
    const table = { 'acme/*': { inputPerMillion: 1, outputPerMillion: 1 }, 'acme/big-*': { inputPerMillion: 5, outputPerMillion: 5 }, 'acme/big-1': { inputPerMillion: 9, outputPerMillion: 9 } };
    expect(priceFor(table, 'acme/big-1').inputPerMillion).toBe(9);
    expect(priceFor(table, 'acme/big-2').inputPerMillion).toBe(5);
    expect(priceFor(table, 'acme/small').inputPerMillion).toBe(1);
  });

  it('meters unknown models at the fallback price, never at 0, unless a `*` entry says otherwise', () => {
    const usage = { inputTokens: 1_000_000, outputTokens: 1_000_000 };
    const expected = UNKNOWN_MODEL_PRICE.inputPerMillion + UNKNOWN_MODEL_PRICE.outputPerMillion;
    expect(expected).toBeGreaterThan(0);
    expect(costOf({ 'acme/*': { inputPerMillion: 1, outputPerMillion: 1 } }, 'other/model', usage)).toBe(expected);
    expect(costOf(DEFAULT_PRICES, 'someone/misspelt-model', usage)).toBe(expected);
    expect(costOf(parsePriceTable('{"*":{"inputPerMillion":2,"outputPerMillion":3}}'), 'other/model', usage)).toBe(5);
    expect(costOf(DEFAULT_PRICES, 'sandbox/echo', usage)).toBe(0);
  });

  it('takes overrides from JSON and refuses malformed ones', () => {
    expect(parsePriceTable('{"x/y":{"inputPerMillion":1,"outputPerMillion":2}}')['x/y']).toEqual({ inputPerMillion: 1, outputPerMillion: 2 });
    expect(parsePriceTable(undefined)).toBe(DEFAULT_PRICES);
    expect(() => parsePriceTable('{"x/y":{"inputPerMillion":-1,"outputPerMillion":2}}')).toThrow();
  });
});
