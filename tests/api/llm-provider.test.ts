import { randomUUID } from 'node:crypto';
import type { Payload } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Worker } from '@temporalio/worker';
import { buildApp, type App } from '../../api/app.js';
import { LlmClient } from '../../integrations/llm/chat-completions.js';
import { EmbeddingsClient } from '../../integrations/llm/embeddings.js';
import { createOrgLlmRoutes } from '../../integrations/llm/org-provider.js';
import { createGuardedFetch } from '../../lib/ssrf.js';
import { createKnowledgeWorker } from '../../workers/knowledge-worker.js';
import { decryptSecret, encryptSecret, generateKeySpec, parseKeyring } from '../../lib/crypto.js';
import { rotateOrgLlmKeys } from '../../integrations/llm/rotate-org-keys.js';
import { DEFAULT_SPEND_SETTINGS } from '../../lib/spend.js';
import { AesGcmPayloadCodec } from '../../lib/temporal-codec.js';
import { startFakeLlm, type FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { crmSettingsFor, testKeyring, testKeySpec } from '../crm/support.js';
import { startAgentTestStack, type AgentTestStack } from '../support/agent-stack.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { createAgent, createOrgWithMembers } from '../support/db.js';
import { requireEnv, TEST_CODEC_KEYS, testDataConverter, testLogger, uniqueTaskQueue } from '../support/temporal.js';

const PROBLEM = 'https://gpt-agent-platform.dev/problems/';

/**
 * The org's own model (issue 15, item 4) on the real stack: admins set an OpenAI-compatible
 * provider through the API, the key is stored encrypted and never answered, and the org's runs
 * call that provider with that key, while the deployment's fake model hears nothing from them.
 */
describe("the org's own LLM provider (app + worker + Temporal + Postgres)", () => {
  let stack: AgentTestStack;
  let app: App;
  /** The org's provider: answers only to ORG_KEY, 401 to anything else. */
  let orgLlm: FakeLlmServer;
  const ORG_KEY = `sk-org-${randomUUID()}`;
  /** Ingestion, with each org's embedding model chosen as workers/main.ts chooses it. */
  let knowledge: { worker: Worker; close(): Promise<void> };
  let knowledgeRunning: Promise<void>;
  const providerFetch = createGuardedFetch({ allowedHosts: ['127.0.0.1'] });

  beforeAll(async () => {
    // The worker reads orgs' keys with the keyring the API encrypts them with, and reaches
    // loopback fakes only because the SSRF allowlist names 127.0.0.1, as the API's does.
    stack = await startAgentTestStack('llm-provider', { worker: { webhooks: { keyring: testKeyring, ssrf: { allowedHosts: ['127.0.0.1'] } } } });
    orgLlm = await startFakeLlm({ requireApiKey: ORG_KEY });
    const knowledgeTaskQueue = uniqueTaskQueue('llm-provider-knowledge');
    const deploymentLlm = { baseUrl: stack.llm.url, apiKey: 'test-llm-key', timeoutMs: 10_000 };
    const routes = createOrgLlmRoutes({
      pool: stack.pool,
      keyring: testKeyring,
      fetch: providerFetch,
      deployment: { llm: new LlmClient(deploymentLlm), embedder: new EmbeddingsClient({ ...deploymentLlm, model: 'deployment/embed-model' }) },
      timeoutMs: 10_000,
    });
    knowledge = await createKnowledgeWorker({
      connection: stack.temporal.nativeConnection,
      namespace: stack.temporal.namespace,
      pool: stack.pool,
      taskQueue: knowledgeTaskQueue,
      workflowBundle: { codePath: requireEnv('TEST_WORKFLOW_BUNDLE') },
      dataConverter: testDataConverter,
      shutdownGraceTime: '2 seconds',
      embedderFor: (orgId) => routes.embedderFor(orgId),
    });
    knowledgeRunning = knowledge.worker.run();
    app = await buildApp({
      knowledgeTaskQueue,
      pool: stack.pool,
      temporal: stack.temporal.client,
      logger: testLogger,
      auth: { jwtSecret: TEST_JWT_SECRET },
      agentRunsTaskQueue: stack.taskQueue,
      crm: { keyring: testKeyring, settings: crmSettingsFor({}) },
      // The operator offers test/* only: the org's own provider's models are not the operator's to list.
      spend: { settings: DEFAULT_SPEND_SETTINGS, models: ['test/*'] },
    });
  });

  afterAll(async () => {
    knowledge?.worker.shutdown();
    await knowledgeRunning;
    await knowledge?.close();
    await providerFetch.close();
    await app?.close();
    await orgLlm?.close();
    await stack?.close();
  });

  async function newOrg() {
    const org = await createOrgWithMembers(stack.admin, ['owner', 'admin', 'member']);
    const [owner, admin, member] = await Promise.all([
      signUserToken(org.userWithRole('owner')),
      signUserToken(org.userWithRole('admin')),
      signUserToken(org.userWithRole('member')),
    ]);
    const call = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, payload?: unknown, token = admin, orgId = org.orgId) =>
      app.inject({
        method,
        url: `/v1/orgs/${orgId}${path}`,
        headers: { authorization: `Bearer ${token}` },
        ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
      });
    const agentId = await createAgent(stack.admin, org.orgId, { model: 'test/agent-model', instructions: 'Be brief.' });
    return { orgId: org.orgId, owner, admin, member, call, agentId };
  }

  const provider = (overrides: Record<string, unknown> = {}) => ({ baseUrl: orgLlm.url, apiKey: ORG_KEY, defaultModel: 'org/chat-model', embeddingModel: 'org/embed-model', ...overrides });

  async function runToEnd(org: Awaited<ReturnType<typeof newOrg>>, input: string) {
    const started = await org.call('POST', `/agents/${org.agentId}/runs`, { input });
    expect(started.statusCode, started.body).toBe(201);
    const runId = started.json().id as string;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const run = (await org.call('GET', `/runs/${runId}`)).json();
      if (['completed', 'failed', 'cancelled'].includes(run.status)) return run;
      if (Date.now() > deadline) throw new Error(`run ${runId} is still ${run.status}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Every payload of the run's history decoded with the workers' codec, plus the raw history: what an operator could read. */
  async function readableHistory(runId: string): Promise<string> {
    const history = await stack.temporal.client.workflow.getHandle(`agent-run:${runId}`).fetchHistory();
    const codec = new AesGcmPayloadCodec(parseKeyring(TEST_CODEC_KEYS));
    const payloads: Payload[] = [];
    const walk = (node: unknown): void => {
      if (!node || typeof node !== 'object' || node instanceof Uint8Array) return;
      const candidate = node as { metadata?: unknown; data?: unknown };
      if (candidate.metadata && typeof candidate.metadata === 'object' && candidate.data instanceof Uint8Array) payloads.push(candidate as Payload);
      for (const value of Object.values(node)) walk(value);
    };
    walk(history);
    expect(payloads.length).toBeGreaterThan(0);
    const decoded = await codec.decode(payloads);
    return [JSON.stringify(history), ...decoded.map((p) => Buffer.from(p.data ?? new Uint8Array()).toString('utf8'))].join('\n');
  }

  it('lets admins set it, answers members without the key, and refuses members and other orgs', async () => {
    const org = await newOrg();
    const stranger = await newOrg();
    expect((await org.call('GET', '/llm-provider', undefined, org.member)).json()).toEqual({ source: 'deployment', provider: null });

    expect((await org.call('PUT', '/llm-provider', provider(), org.member)).statusCode).toBe(403);
    expect((await org.call('PUT', '/llm-provider', provider(), stranger.admin)).statusCode).toBe(404);
    expect((await org.call('GET', '/llm-provider', undefined, stranger.admin)).statusCode).toBe(404);
    expect((await org.call('DELETE', '/llm-provider', undefined, stranger.admin)).statusCode).toBe(404);

    const set = await org.call('PUT', '/llm-provider', provider());
    expect(set.statusCode, set.body).toBe(200);
    expect(set.json()).toMatchObject({
      source: 'org',
      provider: { baseUrl: orgLlm.url, defaultModel: 'org/chat-model', embeddingModel: 'org/embed-model', keySet: true, keyHint: `…${ORG_KEY.slice(-4)}` },
    });
    expect(set.body).not.toContain(ORG_KEY);
    const read = await org.call('GET', '/llm-provider', undefined, org.member);
    expect(read.json()).toEqual(set.json());
    expect(read.body).not.toContain(ORG_KEY.slice(0, -4));

    // At rest: an envelope bound to the org, which decrypts to the key with the org's context only.
    const { rows } = await stack.admin.query<{ api_key: string }>(`select api_key from public.org_llm_provider_keys where org_id = $1`, [org.orgId]);
    expect(rows[0]!.api_key).toMatch(/^v1\./);
    expect(rows[0]!.api_key).not.toContain(ORG_KEY);
    expect(decryptSecret(testKeyring, rows[0]!.api_key, { orgId: org.orgId, rowId: org.orgId, column: 'org_llm_provider_keys.api_key' })).toBe(ORG_KEY);
    expect(() => decryptSecret(testKeyring, rows[0]!.api_key, { orgId: stranger.orgId, rowId: stranger.orgId, column: 'org_llm_provider_keys.api_key' })).toThrow();

    // A model change keeps the key (same URL); the audit log records both changes, never the key.
    const changed = await org.call('PUT', '/llm-provider', { baseUrl: orgLlm.url, defaultModel: 'org/other-model' });
    expect(changed.statusCode, changed.body).toBe(200);
    expect(changed.json().provider).toMatchObject({ defaultModel: 'org/other-model', embeddingModel: null, keyHint: `…${ORG_KEY.slice(-4)}` });
    const audit = await org.call('GET', '/audit-log', undefined, org.owner);
    const actions = audit.json().items.map((e: { action: string }) => e.action);
    expect(actions).toEqual(expect.arrayContaining(['llm_provider.set', 'llm_provider.updated']));
    expect(audit.json().items.find((e: { action: string }) => e.action === 'llm_provider.updated').metadata).toMatchObject({ defaultModel: 'org/other-model', keyChanged: false });
    expect(audit.body).not.toContain(ORG_KEY);

    expect((await org.call('DELETE', '/llm-provider', undefined, org.member)).statusCode).toBe(403);
  });

  it('refuses unsafe or malformed settings with problem+json naming the field', async () => {
    const org = await newOrg();
    for (const baseUrl of ['https://10.0.0.5/v1', 'http://169.254.169.254/latest', 'https://[::1]/v1', 'ftp://llm.example.com/v1', 'not a url', 'https://user:pw@93.184.215.14/v1']) {
      const refused = await org.call('PUT', '/llm-provider', provider({ baseUrl }));
      expect(refused.statusCode, baseUrl).toBe(400);
      expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(refused.json(), baseUrl).toMatchObject({ type: `${PROBLEM}validation-error`, errors: [expect.objectContaining({ path: 'body.baseUrl' })] });
      expect(refused.body).not.toContain(ORG_KEY);
    }
    // Plain http only for allowlisted development hosts.
    expect((await org.call('PUT', '/llm-provider', provider({ baseUrl: 'http://93.184.215.14/v1' }))).json().errors).toEqual([expect.objectContaining({ path: 'body.baseUrl' })]);
    expect((await org.call('PUT', '/llm-provider', { ...provider(), organization: 'x' })).statusCode).toBe(400);

    // The first provider needs a key; a new URL needs the key again (the old key never follows it).
    expect((await org.call('PUT', '/llm-provider', { baseUrl: orgLlm.url, defaultModel: 'org/chat-model' })).json().errors).toEqual([expect.objectContaining({ path: 'body.apiKey' })]);
    expect((await org.call('PUT', '/llm-provider', provider())).statusCode).toBe(200);
    const moved = await org.call('PUT', '/llm-provider', { baseUrl: 'https://93.184.215.14/v1', defaultModel: 'org/chat-model' });
    expect(moved.statusCode).toBe(400);
    expect(moved.json().errors).toEqual([expect.objectContaining({ path: 'body.apiKey' })]);
    expect((await org.call('GET', '/llm-provider')).json().provider.baseUrl).toBe(orgLlm.url);
    expect((await stack.admin.query(`select count(*)::int as n from public.org_llm_providers where org_id = $1`, [org.orgId])).rows[0].n).toBe(1);
  });

  it("checks the provider's model for shape only: the service's catalog and the org's allow-list govern the service's provider", async () => {
    const org = await newOrg();
    // The operator offers test/* and the org allows test/* of it; its own provider's model is neither.
    expect((await org.call('PUT', '/quota', { allowedModels: ['test/*'] }, org.owner)).statusCode).toBe(200);
    const set = await org.call('PUT', '/llm-provider', provider({ defaultModel: 'llama3.1:8b-instruct' }));
    expect(set.statusCode, set.body).toBe(200);
    expect(set.json().provider.defaultModel).toBe('llama3.1:8b-instruct');
    for (const defaultModel of ['', 'gpt 4o', 'x'.repeat(201)]) {
      const refused = await org.call('PUT', '/llm-provider', provider({ defaultModel }));
      expect(refused.statusCode, defaultModel).toBe(400);
      expect(refused.json().errors.map((e: { path: string }) => e.path)).toContain('body.defaultModel');
    }
    // Agents are still held to both on the service's provider.
    expect((await org.call('POST', '/agents', { name: 'Own model', model: 'llama3.1:8b-instruct' }, org.owner)).statusCode).toBe(400);
  });

  it("runs on the org's provider with the org's key and model; the deployment's model hears nothing and the key is in no history", async () => {
    const org = await newOrg();
    expect((await org.call('PUT', '/llm-provider', provider())).statusCode).toBe(200);
    const deploymentCalls = stack.llm.requests.length;
    const orgCalls = orgLlm.requests.length;

    const run = await runToEnd(org, 'What do you sell?');
    expect(run.status, JSON.stringify(run.error)).toBe('completed');
    const received = orgLlm.requests.slice(orgCalls).filter((r) => r.path === '/v1/chat/completions');
    expect(received.length).toBeGreaterThanOrEqual(1);
    for (const request of received) {
      expect(request.headers.authorization).toBe(`Bearer ${ORG_KEY}`);
      expect(request.body).toMatchObject({ model: 'org/chat-model' });
    }
    expect(stack.llm.requests.length).toBe(deploymentCalls);

    // Tokens count (quotas apply); the org's provider bills the org, so the service meters no cost.
    const { rows } = await stack.admin.query<{ input_tokens: number; cost_usd: string }>(`select input_tokens, cost_usd from public.agent_runs where id = $1`, [run.id]);
    expect(rows[0]!.input_tokens).toBeGreaterThan(0);
    expect(Number(rows[0]!.cost_usd)).toBe(0);

    const history = await readableHistory(run.id);
    expect(history).toContain(`"runId":"${run.id}","seq":2`); // the decoding worked: the LLM step's input
    expect(history).not.toContain(ORG_KEY);
  });

  it('fails the run at once, without retries, when the provider rejects the key, naming the provider', async () => {
    const org = await newOrg();
    const wrongKey = `sk-wrong-${randomUUID()}`;
    expect((await org.call('PUT', '/llm-provider', provider({ apiKey: wrongKey }))).statusCode).toBe(200);
    const deploymentCalls = stack.llm.requests.length;
    const orgCalls = orgLlm.requests.length;

    const run = await runToEnd(org, 'Hello?');
    expect(run.status).toBe('failed');
    expect(run.error).toMatchObject({ type: 'LlmKeyRejected' });
    expect(run.error.message).toContain(`(${new URL(orgLlm.url).host}) rejected its API key (HTTP 401)`);
    expect(run.error.message).not.toContain(wrongKey);
    const received = orgLlm.requests.slice(orgCalls);
    expect(received).toHaveLength(1);
    expect(received[0]!.headers.authorization).toBe(`Bearer ${wrongKey}`);
    expect(stack.llm.requests.length).toBe(deploymentCalls);
    expect(await readableHistory(run.id)).not.toContain(wrongKey);
  });

  it("goes back to the deployment's provider once the org removes its own", async () => {
    const org = await newOrg();
    expect((await org.call('PUT', '/llm-provider', provider())).statusCode).toBe(200);
    const removed = await org.call('DELETE', '/llm-provider');
    expect(removed.statusCode).toBe(204);
    expect((await org.call('DELETE', '/llm-provider')).statusCode).toBe(204);
    expect((await org.call('GET', '/llm-provider', undefined, org.member)).json()).toEqual({ source: 'deployment', provider: null });
    expect((await stack.admin.query(`select count(*)::int as n from public.org_llm_provider_keys where org_id = $1`, [org.orgId])).rows[0].n).toBe(0);

    const deploymentCalls = stack.llm.requests.length;
    const orgCalls = orgLlm.requests.length;
    const run = await runToEnd(org, 'Back on the service model?');
    expect(run.status).toBe('completed');
    expect(orgLlm.requests.length).toBe(orgCalls);
    const received = stack.llm.requests.slice(deploymentCalls);
    expect(received.length).toBeGreaterThanOrEqual(1);
    expect(received[0]!.body).toMatchObject({ model: 'test/agent-model' });
    expect(received[0]!.headers.authorization).toBe('Bearer test-llm-key');
    const audit = await org.call('GET', '/audit-log', undefined, org.owner);
    expect(audit.json().items.map((e: { action: string }) => e.action)).toContain('llm_provider.deleted');
  });

  async function ingest(org: Awaited<ReturnType<typeof newOrg>>, title: string, body: string): Promise<string> {
    const created = await org.call('POST', '/knowledge', { title, body });
    expect(created.statusCode, created.body).toBe(201);
    const id = created.json().id as string;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const doc = (await org.call('GET', `/knowledge/${id}`)).json();
      if (doc.status === 'ready') return id;
      if (doc.status === 'failed' || Date.now() > deadline) throw new Error(`document ${id} is ${doc.status}: ${doc.failureReason}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const embeddingModelsOf = async (documentId: string) =>
    (await stack.admin.query<{ m: string | null }>(`select distinct embedding_model as m from public.knowledge_chunks where document_id = $1`, [documentId])).rows.map((r) => r.m);

  it("embeds the org's knowledge and its agents' search queries with its own embedding model, provider and key", async () => {
    const org = await newOrg();
    expect((await org.call('PUT', '/llm-provider', provider())).statusCode).toBe(200);
    const deploymentCalls = stack.llm.requests.length;
    const orgCalls = orgLlm.requests.length;

    const documentId = await ingest(org, 'Prices', 'The Start plan costs 990 roubles a month. The Team plan costs 4900 roubles a month.');
    expect(await embeddingModelsOf(documentId)).toEqual(['org/embed-model']);
    const embedded = orgLlm.requests.slice(orgCalls).filter((r) => r.path === '/v1/embeddings');
    expect(embedded.length).toBeGreaterThanOrEqual(1);
    for (const request of embedded) {
      expect(request.headers.authorization).toBe(`Bearer ${ORG_KEY}`);
      expect(request.body).toMatchObject({ model: 'org/embed-model' });
    }

    // An agent's knowledge_search embeds its query there too (fused ranking over the org's vectors).
    await stack.admin.query(`update public.agents set allowed_tools = '{knowledge_search}' where id = $1`, [org.agentId]);
    const query = `price of the Start plan ${randomUUID().slice(0, 8)}`;
    orgLlm.enqueue(
      { kind: 'tool_calls', calls: [{ name: 'knowledge_search', arguments: JSON.stringify({ query }) }] },
      { kind: 'text', content: 'The Start plan costs 990 roubles a month [Prices, passage 1].' },
    );
    const run = await runToEnd(org, 'How much is the Start plan?');
    expect(run.status, JSON.stringify(run.error)).toBe('completed');
    const queryEmbedding = orgLlm.requests.find((r) => r.path === '/v1/embeddings' && JSON.stringify(r.body).includes(query));
    expect(queryEmbedding?.headers.authorization).toBe(`Bearer ${ORG_KEY}`);
    const { rows } = await stack.admin.query<{ payload: unknown }>(
      `select payload from public.run_events where run_id = $1 and type = 'tool.completed'`,
      [run.id],
    );
    expect(JSON.stringify(rows)).toContain(documentId);
    // The deployment's model embedded nothing and answered nothing for this org.
    expect(stack.llm.requests.length).toBe(deploymentCalls);
  });

  it("embeds nothing for an org on its own provider without an embedding model, and with the deployment's model for the others", async () => {
    const own = await newOrg();
    expect((await own.call('PUT', '/llm-provider', provider({ embeddingModel: null }))).statusCode).toBe(200);
    const deploymentCalls = stack.llm.requests.length;
    const lexicalOnly = await ingest(own, 'Terms', 'Unused licences can be returned within 30 days.');
    expect(await embeddingModelsOf(lexicalOnly)).toEqual([null]);
    expect(stack.llm.requests.length).toBe(deploymentCalls);

    const plain = await newOrg();
    const deploymentEmbedded = await ingest(plain, 'Terms', 'Unused licences can be returned within 30 days.');
    expect(await embeddingModelsOf(deploymentEmbedded)).toEqual(['deployment/embed-model']);
    expect(stack.llm.requests.slice(deploymentCalls).every((r) => r.path === '/v1/embeddings' && r.headers.authorization === 'Bearer test-llm-key')).toBe(true);
  });

  it('refuses at call time a provider address that is internal now, failing the run without retries', async () => {
    const org = await newOrg();
    // As if the URL had passed the guard when saved (a public name that now resolves inward):
    // the row is written directly, the key encrypted as the API would.
    await stack.admin.query(`insert into public.org_llm_providers (org_id, base_url, default_model) values ($1, 'http://169.254.169.254/v1', 'org/chat-model')`, [org.orgId]);
    await stack.admin.query(`insert into public.org_llm_provider_keys (org_id, api_key) values ($1, $2)`, [
      org.orgId,
      encryptSecret(testKeyring, ORG_KEY, { orgId: org.orgId, rowId: org.orgId, column: 'org_llm_provider_keys.api_key' }),
    ]);
    const deploymentCalls = stack.llm.requests.length;
    const run = await runToEnd(org, 'Hello?');
    expect(run.status).toBe('failed');
    expect(run.error).toMatchObject({ type: 'LlmRequestRejected' });
    expect(run.error.message).toContain("The organization's LLM provider URL is refused");
    expect(stack.llm.requests.length).toBe(deploymentCalls);
    const history = await readableHistory(run.id);
    expect(history).not.toContain(ORG_KEY);
    // One attempt: the refusal is final, so the activity never ran twice.
    expect(history.match(/"attempt":2/g)).toBeNull();
  });

  it("rotate-keys re-encrypts orgs' LLM keys under the active key and reports a key it cannot decrypt", async () => {
    const [good, bad] = [await newOrg(), await newOrg()];
    for (const org of [good, bad]) expect((await org.call('PUT', '/llm-provider', provider())).statusCode).toBe(200);
    await stack.admin.query(`update public.org_llm_provider_keys set api_key = 'v1.gone.iv.ct.tag' where org_id = $1`, [bad.orgId]);
    const rotatedKeyring = parseKeyring(`${testKeySpec},${generateKeySpec('rotated')}`, 'rotated');
    const result = await rotateOrgLlmKeys(stack.admin, rotatedKeyring, { batchSize: 1, orgIds: [good.orgId, bad.orgId] });
    expect(result).toMatchObject({ rotated: 1, remaining: 1, failed: [expect.objectContaining({ orgId: bad.orgId })] });
    expect(JSON.stringify(result)).not.toContain(ORG_KEY);
    const { rows } = await stack.admin.query<{ api_key: string }>(`select api_key from public.org_llm_provider_keys where org_id = $1`, [good.orgId]);
    expect(rows[0]!.api_key).toMatch(/^v1\.rotated\./);
    expect(decryptSecret(rotatedKeyring, rows[0]!.api_key, { orgId: good.orgId, rowId: good.orgId, column: 'org_llm_provider_keys.api_key' })).toBe(ORG_KEY);
  });
});
