/**
 * The Temporal UI as the ops console, in a real browser (Debian's Chromium, headless, driven by
 * playwright-core): a dev server with its UI and our codec endpoint, one agent run tagged with
 * its org, then filter by `OrgId`, open the run, and see its input decrypted by the codec server.
 * Saves a screenshot to tests/.artifacts/temporal-ui-run.png (docs/images/ holds a copy).
 *
 * Chromium: CHROMIUM_PATH, or /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it
 * and sets REQUIRE_CHROMIUM=1, so CI fails rather than skips when it is missing).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import type pg from 'pg';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCodecServer } from '../../api/codec-server.js';
import { parseKeyring } from '../../lib/crypto.js';
import { ensureTemporalCli } from '../../scripts/stack/temporal-cli.js';
import { freePort } from '../../scripts/stack/ports.js';
import { startTemporalDevServer, type TemporalDevServer } from '../../scripts/stack/temporal-server.js';
import { AgentIdSearchAttribute, customSearchAttributes, OrgIdSearchAttribute } from '../../workflows/search-attributes.js';
import { agentRunWorkflowId } from '../../workflows/task-queues.js';
import { startFakeLlm, type FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { adminPool, appPool, createAgent, createOrgWithMembers, createRun } from '../support/db.js';
import { connectTestTemporal, createTestAgentWorker, TEST_CODEC_KEYS, testDataConverter, testLogger, uniqueTaskQueue } from '../support/temporal.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

describe('Temporal UI (real browser)', () => {
  if (!existsSync(chromiumPath)) {
    it('needs Chromium', () => {
      expect(process.env.REQUIRE_CHROMIUM, `no Chromium at ${chromiumPath} (apt-get install chromium)`).not.toBe('1');
    });
    return;
  }

  let server: TemporalDevServer;
  let codec: Awaited<ReturnType<typeof buildCodecServer>>;
  let client: Client;
  let connection: Connection;
  let native: NativeConnection;
  let llm: FakeLlmServer;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let worker: Worker;
  let running: Promise<void>;
  let browser: Browser;
  const taskQueue = uniqueTaskQueue('temporal-ui');

  beforeAll(async () => {
    // The Runtime (installed once per test process) comes with the shared test connection.
    const shared = await connectTestTemporal();
    await shared.close();
    const token = randomBytes(32).toString('base64url');
    const codecPort = await freePort('127.0.0.1');
    const uiPort = await freePort('127.0.0.1');
    codec = await buildCodecServer({
      keyring: parseKeyring(TEST_CODEC_KEYS),
      tokens: [token],
      corsOrigins: [`http://127.0.0.1:${uiPort}`],
      logger: testLogger,
    });
    await codec.listen({ host: '127.0.0.1', port: codecPort });
    server = await startTemporalDevServer({
      cliPath: await ensureTemporalCli(() => {}),
      ui: true,
      uiPort,
      searchAttributes: customSearchAttributes,
      extraArgs: ['--ui-codec-endpoint', `http://127.0.0.1:${codecPort}/${token}`],
    });
    connection = await Connection.connect({ address: server.address });
    native = await NativeConnection.connect({ address: server.address });
    client = new Client({ connection, namespace: server.namespace, dataConverter: testDataConverter });
    llm = await startFakeLlm();
    pool = appPool();
    admin = adminPool();
    worker = await createTestAgentWorker({
      temporal: { client, nativeConnection: native, namespace: server.namespace, close: async () => {} },
      pool,
      llmBaseUrl: llm.url,
      taskQueue,
    });
    running = worker.run();
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    worker?.shutdown();
    await running;
    await llm?.close();
    await pool?.end();
    await admin?.end();
    await connection?.close();
    await native?.close();
    await server?.stop();
    await codec?.close();
  });

  it('filters runs by OrgId, opens one and shows its payloads decrypted through the codec server', async () => {
    const { orgId } = await createOrgWithMembers(admin, ['owner']);
    const agentId = await createAgent(admin, orgId, { model: 'openai/gpt-4o-mini' });
    const runId = await createRun(admin, orgId, agentId, { input: 'Hello' });
    llm.enqueue({ kind: 'text', content: 'Hi there' });
    const workflowId = agentRunWorkflowId(runId);
    // A marker only the encrypted input payload carries (ids also appear in search attributes).
    const marker = `decoded-by-codec-${randomBytes(4).toString('hex')}`;
    await client.workflow.execute('agentRun', {
      taskQueue,
      workflowId,
      args: [{ orgId, agentId, runId, note: marker }],
      typedSearchAttributes: [
        { key: OrgIdSearchAttribute, value: orgId },
        { key: AgentIdSearchAttribute, value: agentId },
      ],
    });
    // Another org's run must not match the filter.
    const other = await createOrgWithMembers(admin, ['owner']);
    const otherAgent = await createAgent(admin, other.orgId, {});
    const otherRun = await createRun(admin, other.orgId, otherAgent, {});
    llm.enqueue({ kind: 'text', content: 'other' });
    await client.workflow.execute('agentRun', {
      taskQueue,
      workflowId: agentRunWorkflowId(otherRun),
      args: [{ orgId: other.orgId, agentId: otherAgent, runId: otherRun }],
      typedSearchAttributes: [{ key: OrgIdSearchAttribute, value: other.orgId }],
    });

    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const query = encodeURIComponent(`OrgId = "${orgId}"`);
    await page.goto(`${server.uiUrl}/namespaces/${server.namespace}/workflows?query=${query}`);
    const link = page.getByRole('link', { name: workflowId });
    await link.waitFor({ timeout: 30_000 });
    expect(await page.getByRole('link', { name: agentRunWorkflowId(otherRun) }).count()).toBe(0);

    await link.click();
    // The input payload is encrypted in the history; the page shows the marker only because the
    // UI sent it to the codec server and got the plaintext back.
    await page.getByText(marker).first().waitFor({ timeout: 30_000 });

    mkdirSync(path.join(root, 'tests', '.artifacts'), { recursive: true });
    await page.screenshot({ path: path.join(root, 'tests', '.artifacts', 'temporal-ui-run.png'), fullPage: true });
    await page.close();
  }, 120_000);
});
