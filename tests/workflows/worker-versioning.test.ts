/**
 * Worker Deployment Versioning on the dev server (CLI v1.5.1 = server 1.29.1, no flags needed):
 * a v1 worker holds a run in the middle of its LLM call, a v2 worker starts, promotion makes v2
 * current, new runs land on v2, and the pinned run finishes on v1. Each worker is versioned the
 * way workers/main.ts does it (workers/versioning.ts); promotion is deploy:promote's own code.
 */
import { randomUUID } from 'node:crypto';
import { temporal as proto } from '@temporalio/proto';
import type { Worker } from '@temporalio/worker';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeDeployment, setCurrentVersion } from '../../workers/deployments.js';
import { agentRunWorkflowId, CONVERSATION_MEMO } from '../../workflows/task-queues.js';
import type { agentRun } from '../../workflows/agent-run/index.js';
import { startFakeLlm, type FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { adminPool, appPool, createAgent, createOrgWithMembers, createRun } from '../support/db.js';
import { connectTestTemporal, createTestAgentWorker, uniqueTaskQueue, type TestTemporal } from '../support/temporal.js';

const PINNED = proto.api.enums.v1.VersioningBehavior.VERSIONING_BEHAVIOR_PINNED;
const AUTO_UPGRADE = proto.api.enums.v1.VersioningBehavior.VERSIONING_BEHAVIOR_AUTO_UPGRADE;

describe('Worker Deployment Versioning', () => {
  let temporal: TestTemporal;
  let llm: FakeLlmServer;
  let admin: pg.Pool;
  let pool: pg.Pool;
  const taskQueue = uniqueTaskQueue('versioning');
  const deploymentName = `gap-worker-${randomUUID().slice(0, 8)}`;
  const v1 = { deploymentName, buildId: 'v1' };
  const v2 = { deploymentName, buildId: 'v2' };
  const running: Array<{ worker: Worker; done: Promise<void> }> = [];

  beforeAll(async () => {
    temporal = await connectTestTemporal();
    llm = await startFakeLlm();
    admin = adminPool();
    pool = appPool();
  });

  afterAll(async () => {
    for (const r of running) r.worker.shutdown();
    await Promise.allSettled(running.map((r) => r.done));
    await llm?.close();
    await temporal?.close();
    await pool?.end();
    await admin?.end();
  });

  async function startWorker(buildId: string): Promise<void> {
    const worker = await createTestAgentWorker({ temporal, pool, llmBaseUrl: llm.url, taskQueue, deploymentVersion: { deploymentName, buildId } });
    running.push({ worker, done: worker.run() });
  }

  async function startRun(input: string) {
    const { orgId } = await createOrgWithMembers(admin, ['owner']);
    const agentId = await createAgent(admin, orgId);
    const runId = await createRun(admin, orgId, agentId, { input });
    return temporal.client.workflow.start<typeof agentRun>('agentRun', { taskQueue, workflowId: agentRunWorkflowId(runId), args: [{ orgId, agentId, runId }] });
  }

  /** The build that completed each workflow task of the run, in order. */
  async function taskBuilds(workflowId: string): Promise<string[]> {
    const history = await temporal.client.workflow.getHandle(workflowId).fetchHistory();
    return (history.events ?? []).flatMap((e) => (e.workflowTaskCompletedEventAttributes ? [e.workflowTaskCompletedEventAttributes.deploymentVersion?.buildId ?? 'unversioned'] : []));
  }

  it('a pinned run finishes on the build that started it while promotion sends new runs to the next', async () => {
    await startWorker('v1');
    await setCurrentVersion(temporal.client, v1, { timeoutMs: 60_000 });
    expect(await describeDeployment(temporal.client, deploymentName)).toMatchObject({ current: 'v1', versions: ['v1'] });

    // The old run parks in its LLM call across the deploy.
    llm.setReplyFor((body) => JSON.stringify(body.messages).includes('slow lead'), { kind: 'text', content: 'answered by v1', delayMs: 6_000 });
    const parked = await startRun('slow lead');
    const deadline = Date.now() + 30_000;
    while (!llm.requests.some((r) => JSON.stringify(r.body).includes('slow lead'))) {
      if (Date.now() > deadline) throw new Error('the parked run never reached the LLM');
      await new Promise((r) => setTimeout(r, 100));
    }
    const parkedInfo = (await parked.describe()).raw.workflowExecutionInfo?.versioningInfo;
    expect(parkedInfo?.behavior).toBe(PINNED);
    expect(parkedInfo?.deploymentVersion?.buildId).toBe('v1');

    await startWorker('v2');
    await setCurrentVersion(temporal.client, v2, { timeoutMs: 60_000 });
    expect(await describeDeployment(temporal.client, deploymentName)).toMatchObject({ current: 'v2' });

    const fresh = await startRun('fast lead');
    await fresh.result();
    expect(new Set(await taskBuilds(fresh.workflowId))).toEqual(new Set(['v2']));
    expect((await fresh.describe()).raw.workflowExecutionInfo?.versioningInfo?.deploymentVersion?.buildId).toBe('v2');

    await parked.result();
    const parkedBuilds = await taskBuilds(parked.workflowId);
    // Tasks after the LLM call (it returned after v2 became current) still ran on v1.
    expect(parkedBuilds.length).toBeGreaterThan(1);
    expect(new Set(parkedBuilds)).toEqual(new Set(['v1']));
    const { rows } = await admin.query<{ output: string }>('select output from public.agent_runs where id = $1', [parked.workflowId.replace(/^agent-run:/, '')]);
    expect(JSON.stringify(rows[0]?.output)).toContain('answered by v1');
  }, 180_000);

  it('a conversation (marked by the memo the API sets) auto-upgrades instead', async () => {
    const { orgId } = await createOrgWithMembers(admin, ['owner']);
    const agentId = await createAgent(admin, orgId);
    const runId = await createRun(admin, orgId, agentId, { input: 'hello' });
    const handle = await temporal.client.workflow.start<typeof agentRun>('agentRun', {
      taskQueue,
      workflowId: agentRunWorkflowId(runId),
      args: [{ orgId, agentId, runId, conversation: { idleTimeoutSeconds: 3600 } }],
      memo: { [CONVERSATION_MEMO]: true },
    });
    const deadline = Date.now() + 30_000;
    let info = (await handle.describe()).raw.workflowExecutionInfo?.versioningInfo;
    while (!info?.behavior && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      info = (await handle.describe()).raw.workflowExecutionInfo?.versioningInfo;
    }
    expect(info?.behavior).toBe(AUTO_UPGRADE);
    expect(info?.deploymentVersion?.buildId).toBe('v2');
    await handle.terminate('test over');
  }, 60_000);
});
