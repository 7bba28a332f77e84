import { describe, expect, it } from 'vitest';
import { ConfigError, loadApiConfig, loadWorkerConfig } from '../../lib/config.js';
import { modelLabel, registry, recordLlmCall, setMetricModels } from '../../lib/metrics.js';

// Issue 12, item 6: operator settings that would open a hole are refused, and an admin's choice
// of model name cannot grow the metrics without bound.
const production = {
  APP_ENV: 'production',
  DATABASE_URL: 'postgres://authenticator:x@db:5432/app',
  SUPABASE_JWT_SECRET: 'x'.repeat(32),
  TEMPORAL_CODEC_KEYS: 'k1:' + Buffer.alloc(32).toString('base64'),
  LLM_API_KEY: 'sk-test',
};

const problemsOf = (load: () => unknown): string[] => {
  try {
    load();
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
};

describe('operator settings', () => {
  it('refuses SSRF_ALLOWED_HOSTS in production, for the API and the worker', () => {
    for (const load of [loadApiConfig, loadWorkerConfig]) {
      expect(problemsOf(() => load(production))).toEqual([]);
      expect(problemsOf(() => load({ ...production, SSRF_ALLOWED_HOSTS: '10.0.0.5' }))).toEqual([expect.stringMatching(/^SSRF_ALLOWED_HOSTS: must be empty when APP_ENV=production/)]);
      expect(problemsOf(() => load({ ...production, APP_ENV: 'development', SSRF_ALLOWED_HOSTS: '127.0.0.1:8080' }))).toEqual([]);
    }
  });

  it('refuses a default daily quota above the maximum an org may set', () => {
    expect(problemsOf(() => loadApiConfig({ ...production, ORG_DAILY_TOKEN_QUOTA_DEFAULT: '500', ORG_DAILY_TOKEN_QUOTA_MAX: '100' }))).toEqual([expect.stringMatching(/^ORG_DAILY_TOKEN_QUOTA_DEFAULT/)]);
  });
});

describe('the model label of metrics', () => {
  it('keeps listed models, folds names under a listed prefix into the prefix, and everything else into other', async () => {
    setMetricModels(['openai/gpt-4o-mini', 'sandbox/*']);
    expect(modelLabel('openai/gpt-4o-mini')).toBe('openai/gpt-4o-mini');
    expect(modelLabel('sandbox/echo-1234')).toBe('sandbox/*');
    expect(modelLabel('acme/made-up-by-an-admin')).toBe('other');
    recordLlmCall({ model: `acme/${'x'.repeat(40)}`, outcome: 'ok', seconds: 0.1, inputTokens: 1 });
    const text = await registry.getSingleMetricAsString('gap_llm_requests_total');
    expect(text).toContain('model="other"');
    expect(text).not.toContain('acme/');
  });
});
