import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Worker } from '@temporalio/worker';
import type pg from 'pg';
import { afterAll, beforeAll, afterEach, describe, expect, it } from 'vitest';
import { createToolRegistry } from '../../activities/tools/builtin.js';
import { startFakeLlm, type FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { adminPool, appPool, createAgent, createOrgWithMembers, createRun } from '../support/db.js';
import { httpEffectTool } from '../support/effect-tool.js';
import { connectTestTemporal, createTestAgentWorker, uniqueTaskQueue, type TestTemporal } from '../support/temporal.js';
import { agentRunWorkflowId } from '../../workflows/task-queues.js';
import { agentRun } from '../../workflows/agent-run/index.js';

const crashWorkerPath = fileURLToPath(new URL('../support/crash-worker.ts', import.meta.url));

/** A stand-in for a CRM: counts the writes it receives, per idempotency key. */
async function startEffectServer() {
  const calls: Array<{ key: string; body: unknown }> = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      calls.push({ key: String(req.headers['idempotency-key']), body: JSON.parse(body) });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ effectId: calls.length }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/write`, calls, close: () => new Promise((r) => server.close(r)) };
}

describe('crash safety: a worker SIGKILLed mid-run is replaced and the run completes once', { timeout: 120_000 }, () => {
  let temporal: TestTemporal;
  let llm: FakeLlmServer;
  let effects: Awaited<ReturnType<typeof startEffectServer>>;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let child: ChildProcess | undefined;
  let replacement: { worker: Worker; running: Promise<void> } | undefined;

  beforeAll(async () => {
    temporal = await connectTestTemporal();
    llm = await startFakeLlm();
    effects = await startEffectServer();
    pool = appPool();
    admin = adminPool();
  });

  afterEach(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    child = undefined;
    if (replacement) {
      replacement.worker.shutdown();
      await replacement.running;
      replacement = undefined;
    }
    llm.reset();
  });

  afterAll(async () => {
    await llm?.close();
    await effects?.close();
    await temporal?.close();
    await pool?.end();
    await admin?.end();
  });

  async function spawnCrashWorker(taskQueue: string, crashAfterEffect: boolean): Promise<ChildProcess> {
    const proc = spawn(process.execPath, ['--import', 'tsx', crashWorkerPath], {
      env: {
        ...process.env,
        CRASH_TASK_QUEUE: taskQueue,
        CRASH_LLM_URL: llm.url,
        CRASH_EFFECT_URL: effects.url,
        CRASH_AFTER_EFFECT: crashAfterEffect ? '1' : '0',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      proc.stdout!.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('crash-worker ready')) resolve();
      });
      proc.once('exit', (code, signal) => reject(new Error(`crash worker exited early (${code ?? signal})`)));
    });
    return proc;
  }

  async function startReplacement(taskQueue: string) {
    const worker = await createTestAgentWorker({ temporal, pool, llmBaseUrl: llm.url, taskQueue, tools: createToolRegistry([httpEffectTool(effects.url)]) });
    replacement = { worker, running: worker.run() };
  }

  const exited = (proc: ChildProcess) =>
    new Promise<NodeJS.Signals | null>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) resolve(proc.signalCode);
      else proc.once('exit', (_code, signal) => resolve(signal));
    });

  async function newRun(allowedTools: string[]) {
    const { orgId } = await createOrgWithMembers(admin, ['owner']);
    const agentId = await createAgent(admin, orgId, { model: 'test/model' });
    await admin.query(`update public.agents set allowed_tools = $2 where id = $1`, [agentId, allowedTools]);
    const runId = await createRun(admin, orgId, agentId, { input: 'crash me' });
    return { orgId, agentId, runId };
  }

  async function eventTypes(runId: string) {
    const { rows } = await admin.query(`select seq, type from public.run_events where run_id = $1 order by seq`, [runId]);
    return rows.map((r: { seq: number; type: string }) => `${r.seq}:${r.type}`);
  }

  it('SIGKILL while an LLM call is in flight: the call is retried on a new worker, recorded once', async () => {
    const taskQueue = uniqueTaskQueue('crash-llm');
    child = await spawnCrashWorker(taskQueue, false);
    llm.enqueue({ kind: 'text', content: 'never delivered', delayMs: 30_000 }, { kind: 'text', content: 'answered after the crash' });
    const ids = await newRun([]);
    const handle = await temporal.client.workflow.start(agentRun, {
      taskQueue,
      workflowId: agentRunWorkflowId(ids.runId),
      args: [{ ...ids, heartbeatTimeoutSeconds: 3 }],
      // A task held by the dead worker is retried after this, not after the 10 s default.
      workflowTaskTimeout: '2 seconds',
    });
    while (llm.requests.length === 0) await new Promise((r) => setTimeout(r, 50));

    child.kill('SIGKILL');
    expect(await exited(child)).toBe('SIGKILL');
    await startReplacement(taskQueue);

    const result = await handle.result();
    expect(result.status).toBe('completed');
    expect(llm.requests).toHaveLength(2);
    expect(await eventTypes(ids.runId)).toEqual(['1:run.started', '2:llm.completed', '3:run.completed']);
    const { rows } = await admin.query(`select output, llm_calls from public.agent_runs where id = $1`, [ids.runId]);
    expect(rows[0]).toEqual({ output: 'answered after the crash', llm_calls: 1 });
  });

  it('SIGKILL right after a side effect committed: the new worker returns the recorded result, one effect in total', async () => {
    const taskQueue = uniqueTaskQueue('crash-effect');
    child = await spawnCrashWorker(taskQueue, true);
    llm.enqueue(
      { kind: 'tool_calls', calls: [{ id: 'call_w', name: 'test_http_effect', arguments: '{"text":"write once"}' }] },
      { kind: 'text', content: 'written' },
    );
    const ids = await newRun(['test_http_effect']);
    const callsBefore = effects.calls.length;
    const handle = await temporal.client.workflow.start(agentRun, {
      taskQueue,
      workflowId: agentRunWorkflowId(ids.runId),
      args: [{ ...ids, heartbeatTimeoutSeconds: 3 }],
      // A task held by the dead worker is retried after this, not after the 10 s default.
      workflowTaskTimeout: '2 seconds',
    });

    expect(await exited(child)).toBe('SIGKILL');
    await startReplacement(taskQueue);

    expect((await handle.result()).status).toBe('completed');
    const calls = effects.calls.slice(callsBefore);
    expect(calls).toEqual([{ key: `agent-run:${ids.runId}:tool-3`, body: { text: 'write once', runId: ids.runId } }]);
    const { rows } = await admin.query(`select idempotency_key, result from public.effect_ledger where run_id = $1`, [ids.runId]);
    expect(rows).toEqual([{ idempotency_key: `agent-run:${ids.runId}:tool-3`, result: { effectId: calls.length + callsBefore } }]);
    expect(await eventTypes(ids.runId)).toEqual(['1:run.started', '2:llm.completed', '3:tool.completed', '4:llm.completed', '5:run.completed']);
  });
});
