import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentRunHandoff } from '../../workers/run-handoff.js';
import { agentRun } from '../../workflows/agent-run/index.js';
import { agentRunWorkflowId } from '../../workflows/task-queues.js';
import { connectTestTemporal, uniqueTaskQueue, type TestTemporal } from '../support/temporal.js';

// The intake's updates wait for an agent worker to run the handler. With none polling (a deploy,
// an outage, a worker stopping) the wait must end, so the intake activity fails and is retried
// instead of hanging its own worker's shutdown forever.
describe('the intake hands messages and handoffs to agent runs under a deadline', () => {
  let temporal: TestTemporal;
  const taskQueue = uniqueTaskQueue('handoff-nobody-polls');

  beforeAll(async () => {
    temporal = await connectTestTemporal();
  });

  afterAll(async () => {
    await temporal?.close();
  });

  it('gives up a handoff and a message no agent worker takes, within the deadline', async () => {
    const handoff = createAgentRunHandoff({ temporal: temporal.client, taskQueue, updateDeadlineMs: 1_000 });
    const run = { orgId: randomUUID(), agentId: randomUUID(), runId: randomUUID() };
    await temporal.client.workflow.start(agentRun, {
      taskQueue,
      workflowId: agentRunWorkflowId(run.runId),
      args: [{ ...run, conversation: { idleTimeoutSeconds: 60 } }],
    });
    try {
      const t0 = Date.now();
      await expect(handoff.requestHandoff(run, { reason: 'salesperson_replied', key: 'k1' })).rejects.toThrow();
      await expect(handoff.deliverMessage(run, randomUUID())).rejects.toThrow();
      expect(Date.now() - t0).toBeLessThan(10_000);
    } finally {
      await temporal.client.workflow.getHandle(agentRunWorkflowId(run.runId)).terminate('test over');
    }
  });
});
