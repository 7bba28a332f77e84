import { describe, expect, it } from 'vitest';
import { costOf, DEFAULT_PRICES, parsePriceTable, priceFor } from '../../activities/pricing.js';

describe('LLM price table', () => {
  it('prices a call from input and output tokens, per million', () => {
    expect(costOf(DEFAULT_PRICES, 'openai/gpt-4o-mini', { inputTokens: 1_000_000, outputTokens: 500_000 })).toBe(0.45);
  });

  it('matches exact ids first, then the longest prefix pattern, and costs 0 for unknown models', () => {
    const table = { 'acme/*': { inputPerMillion: 1, outputPerMillion: 1 }, 'acme/big-*': { inputPerMillion: 5, outputPerMillion: 5 }, 'acme/big-1': { inputPerMillion: 9, outputPerMillion: 9 } };
    expect(priceFor(table, 'acme/big-1').inputPerMillion).toBe(9);
    expect(priceFor(table, 'acme/big-2').inputPerMillion).toBe(5);
    expect(priceFor(table, 'acme/small').inputPerMillion).toBe(1);
    expect(costOf(table, 'other/model', { inputTokens: 1000, outputTokens: 1000 })).toBe(0);
  });

  it('takes overrides from JSON and refuses malformed ones', () => {
    expect(parsePriceTable('{"x/y":{"inputPerMillion":1,"outputPerMillion":2}}')['x/y']).toEqual({ inputPerMillion: 1, outputPerMillion: 2 });
    expect(parsePriceTable(undefined)).toBe(DEFAULT_PRICES);
    expect(() => parsePriceTable('{"x/y":{"inputPerMillion":-1,"outputPerMillion":2}}')).toThrow();
  });
});
