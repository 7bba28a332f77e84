/**
 * The LLM step as an activity on its own (MockActivityEnvironment from @temporalio/testing):
 * no worker and no workflow, the real Postgres of the suite and the sandbox LLM. What only the
 * activity can show: it heartbeats while the provider thinks, and a cancellation reaches the
 * HTTP request instead of waiting for the answer.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import type pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAgentRunActivities, type AgentRunActivities } from '../../activities/agent-run/index.js';
import { LlmClient } from '../../integrations/llm/chat-completions.js';
import { startFakeLlm, type FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { adminPool, appPool, createAgent, createOrgWithMembers, createRun } from '../support/db.js';
import { testLogger } from '../support/temporal.js';

describe('callLlm as an activity', () => {
  let llm: FakeLlmServer;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let activities: AgentRunActivities;
  let orgId: string;
  let agentId: string;

  beforeAll(async () => {
    llm = await startFakeLlm();
    pool = appPool({ max: 2 });
    admin = adminPool({ max: 2 });
    activities = createAgentRunActivities({
      pool,
      llm: new LlmClient({ baseUrl: llm.url, timeoutMs: 60_000 }),
      logger: testLogger,
      heartbeatIntervalMs: 20,
      streamDeltas: false,
    });
    ({ orgId } = await createOrgWithMembers(admin, ['owner']));
    agentId = await createAgent(admin, orgId, { model: 'test/model', instructions: 'Be brief.' });
  });

  afterAll(async () => {
    await llm?.close();
    await pool?.end();
    await admin?.end();
  });

  beforeEach(() => llm.reset());

  const eventsOf = async (runId: string) =>
    (await admin.query<{ seq: number; type: string }>(`select seq, type from public.run_events where run_id = $1 order by seq`, [runId])).rows;

  it('heartbeats while the provider is thinking, then records the answer as its event', async () => {
    llm.enqueue({ kind: 'text', content: 'Thought it through.', delayMs: 500 });
    const runId = await createRun(admin, orgId, agentId, { input: 'Think' });
    const env = new MockActivityEnvironment({ activityType: 'callLlm' });
    let heartbeats = 0;
    env.on('heartbeat', () => heartbeats++);

    const result = await env.run(activities.callLlm, { orgId, runId, seq: 2 });

    expect(result).toMatchObject({ finishReason: 'stop', toolCalls: [] });
    // 500 ms at one heartbeat per 20 ms: a loaded machine may skip many, never all.
    expect(heartbeats).toBeGreaterThanOrEqual(3);
    expect(await eventsOf(runId)).toEqual([{ seq: 2, type: 'llm.completed' }]);
  });

  it('aborts the HTTP request when the activity is cancelled, and records and meters nothing', async () => {
    llm.enqueue({ kind: 'text', content: 'never delivered', delayMs: 30_000 });
    const runId = await createRun(admin, orgId, agentId, { input: 'Think forever' });
    const env = new MockActivityEnvironment({ activityType: 'callLlm' });

    const started = Date.now();
    const call = env.run(activities.callLlm, { orgId, runId, seq: 2 });
    const deadline = Date.now() + 10_000;
    while (llm.requests.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(llm.requests).toHaveLength(1);
    env.cancel();

    await expect(call).rejects.toMatchObject({ name: 'LlmError', kind: 'aborted' });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(await eventsOf(runId)).toEqual([]);
    const { rows } = await admin.query(`select llm_calls, input_tokens from public.agent_runs where id = $1`, [runId]);
    expect(rows).toEqual([{ llm_calls: 0, input_tokens: 0 }]);
  });
});
