import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import type { SpendSettings } from '../../lib/spend.js';
import type { FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { startAgentTestStack, type AgentTestStack } from '../support/agent-stack.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { createOrgWithMembers } from '../support/db.js';
import { testLogger } from '../support/temporal.js';

const PROBLEM = 'https://gpt-agent-platform.dev/problems/';

// Issue 12, item 4: spend has a ceiling by default. The worker and the API share the operator's
// settings, small here so a test can reach them.
const settings: SpendSettings = { orgDailyTokenQuotaDefault: 1_000, orgDailyTokenQuotaMax: 10_000, runTokenBudgetDefault: 150 };

describe('spend ceilings (app + worker + Temporal + Postgres)', () => {
  let stack: AgentTestStack;
  let llm: FakeLlmServer;
  let admin: pg.Pool;
  let app: App;

  beforeAll(async () => {
    stack = await startAgentTestStack('spend-test', { worker: { spend: settings } });
    ({ llm, admin } = stack);
    app = await buildApp({
      pool: stack.pool,
      temporal: stack.temporal.client,
      logger: testLogger,
      auth: { jwtSecret: TEST_JWT_SECRET },
      agentRunsTaskQueue: stack.taskQueue,
      spend: { settings, models: ['test/*', 'openai/gpt-4o-mini'] },
    });
  });

  afterAll(async () => {
    await app?.close();
    await stack?.close();
  });

  async function newOrg() {
    const org = await createOrgWithMembers(admin, ['owner', 'member']);
    const owner = await signUserToken(org.userWithRole('owner'));
    const member = await signUserToken(org.userWithRole('member'));
    const call = (method: 'GET' | 'POST' | 'PUT' | 'PATCH', path: string, payload?: unknown, token = owner, orgId = org.orgId) =>
      app.inject({
        method,
        url: `/v1/orgs/${orgId}${path}`,
        headers: { authorization: `Bearer ${token}` },
        ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
      });
    return { orgId: org.orgId, owner, member, call };
  }

  async function waitForFinal(call: Awaited<ReturnType<typeof newOrg>>['call'], runId: string) {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const run = (await call('GET', `/runs/${runId}`)).json();
      if (['completed', 'failed', 'cancelled'].includes(run.status)) return run;
      if (Date.now() > deadline) throw new Error(`run ${runId} is still ${run.status}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it("gives a new org the operator's daily quota, which admins read and set within the operator's maximum", async () => {
    const { call, member, orgId } = await newOrg();
    const initial = await call('GET', '/quota');
    expect(initial.statusCode).toBe(200);
    expect(initial.json()).toMatchObject({
      dailyTokenQuota: 1_000,
      dailyTokenQuotaSource: 'operator-default',
      operatorMaxDailyTokenQuota: 10_000,
      runTokenBudgetDefault: 150,
      tokensToday: 0,
      allowedModels: null,
    });

    const set = await call('PUT', '/quota', { dailyTokenQuota: 5_000 });
    expect(set.statusCode).toBe(200);
    expect(set.json()).toMatchObject({ dailyTokenQuota: 5_000, dailyTokenQuotaSource: 'org' });
    expect((await admin.query(`select daily_token_quota from public.organizations where id = $1`, [orgId])).rows[0]).toEqual({ daily_token_quota: '5000' });

    const tooMuch = await call('PUT', '/quota', { dailyTokenQuota: 10_001 });
    expect(tooMuch.statusCode).toBe(400);
    expect(tooMuch.json().errors).toEqual([expect.objectContaining({ path: 'body.dailyTokenQuota' })]);
    // No way around the ceiling: "unlimited" is not a value, null means the operator's default.
    expect((await call('PUT', '/quota', { dailyTokenQuota: 0 })).statusCode).toBe(400);
    expect((await call('PUT', '/quota', { dailyTokenQuota: null })).json()).toMatchObject({ dailyTokenQuota: 1_000, dailyTokenQuotaSource: 'operator-default' });

    expect((await call('GET', '/quota', undefined, member)).statusCode).toBe(200);
    const byMember = await call('PUT', '/quota', { dailyTokenQuota: 2_000 }, member);
    expect(byMember.statusCode).toBe(403);
    const stranger = await newOrg();
    expect((await call('GET', '/quota', undefined, stranger.owner, orgId)).statusCode).toBe(404);
    expect((await call('PUT', '/quota', { dailyTokenQuota: 2_000 }, stranger.owner, orgId)).statusCode).toBe(404);
  });

  it("refuses to save an agent with a model outside the org's allow-list or the operator's catalog, naming model", async () => {
    const { call } = await newOrg();
    const unknown = await call('POST', '/agents', { name: 'Unknown model', model: 'acme/secret-model' });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json()).toMatchObject({ type: `${PROBLEM}validation-error`, errors: [expect.objectContaining({ path: 'body.model' })] });

    expect((await call('PUT', '/quota', { allowedModels: ['test/cheap'] })).json()).toMatchObject({ allowedModels: ['test/cheap'] });
    const outside = await call('POST', '/agents', { name: 'Pricey', model: 'openai/gpt-4o-mini' });
    expect(outside.statusCode).toBe(400);
    expect(outside.json().errors).toEqual([expect.objectContaining({ path: 'body.model' })]);
    const inside = await call('POST', '/agents', { name: 'Cheap', model: 'test/cheap' });
    expect(inside.statusCode).toBe(201);
    const patched = await call('PATCH', `/agents/${inside.json().id}`, { model: 'openai/gpt-4o-mini' });
    expect(patched.statusCode).toBe(400);
    expect(patched.json().errors).toEqual([expect.objectContaining({ path: 'body.model' })]);
    // An org may only narrow the operator's catalog.
    const widen = await call('PUT', '/quota', { allowedModels: ['acme/*'] });
    expect(widen.statusCode).toBe(400);
    expect(widen.json().errors).toEqual([expect.objectContaining({ path: 'body.allowedModels.0' })]);
  });

  it("stops a run at the operator's default run budget when its agent sets none", async () => {
    const { call } = await newOrg();
    const agent = (await call('POST', '/agents', { name: 'No budget', model: 'test/model' })).json();
    expect(agent.runTokenBudget).toBeNull();
    // 160 tokens on the first call: past the default budget of 150, so no second call.
    llm.enqueue({ kind: 'tool_calls', calls: [{ name: 'no_such_tool', arguments: '{}' }], usage: { inputTokens: 100, outputTokens: 60 } });
    const started = await call('POST', `/agents/${agent.id}/runs`, { input: 'Spend freely' });
    const run = await waitForFinal(call, started.json().id);
    expect(run).toMatchObject({ status: 'failed', error: { type: 'RunBudgetExceeded' }, usage: { inputTokens: 100, outputTokens: 60, llmCalls: 1 } });
  });

  it('lets concurrent runs overshoot a small daily quota by at most one call, reserving before each call and settling after', async () => {
    const { call, orgId } = await newOrg();
    expect((await call('PUT', '/quota', { dailyTokenQuota: 600 })).statusCode).toBe(200);
    const agent = (await call('POST', '/agents', { name: 'Racer', model: 'test/model', maxOutputTokens: 100 })).json();
    const RUNS = 8;
    const CALL_TOKENS = 120;
    // Slow answers, so every run's call is in flight before the first one is recorded.
    for (let i = 0; i < RUNS; i++) llm.enqueue({ kind: 'text', content: `answer ${i}`, usage: { inputTokens: 20, outputTokens: 100 }, delayMs: 500 });
    const started = await Promise.all(Array.from({ length: RUNS }, (_, i) => call('POST', `/agents/${agent.id}/runs`, { input: `race ${i}` })));
    const runs = await Promise.all(started.map((res) => waitForFinal(call, res.json().id)));

    const { rows } = await admin.query<{ tokens: string }>(`select coalesce(sum(input_tokens + output_tokens), 0) as tokens from public.usage_daily where org_id = $1`, [orgId]);
    const used = Number(rows[0]!.tokens);
    expect(used).toBeLessThanOrEqual(600 + CALL_TOKENS);
    expect(runs.filter((r) => r.status === 'completed').length).toBe(used / CALL_TOKENS);
    const refused = runs.filter((r) => r.status === 'failed');
    expect(refused.length).toBeGreaterThan(0);
    for (const run of refused) expect(run.error.type).toBe('OrgDailyQuotaExceeded');
    // Every reservation was settled or released: nothing stays reserved.
    expect((await call('GET', '/quota')).json()).toMatchObject({ tokensToday: used, reservedTokens: 0 });
    llm.reset();
  });
});
