import type { Worker } from '@temporalio/worker';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { createKnowledgeWorker } from '../../workers/knowledge-worker.js';
import type { FakeLlmRequestBody, FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { startAgentTestStack, type AgentTestStack } from '../support/agent-stack.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { createOrgWithMembers } from '../support/db.js';
import { makePdf } from '../support/document-fixtures.js';
import { requireEnv, testDataConverter, testLogger, uniqueTaskQueue } from '../support/temporal.js';

/**
 * Issue 15's "done when": an agent answers a question from an uploaded PDF in a run, citing it.
 * Everything through the API on the real stack: the PDF goes in as a multipart upload, the
 * knowledge worker ingests it on Temporal, an agent run's knowledge_search reads its chunks
 * under the run's org scope, and the (fake) model's answer quotes the citation it was given.
 */
let stack: AgentTestStack;
let llm: FakeLlmServer;
let admin: pg.Pool;
let app: App;
let knowledgeWorker: Worker;
let knowledgeRunning: Promise<void>;
let closeKnowledge: () => Promise<void>;
let orgId: string;
let token: string;

beforeAll(async () => {
  stack = await startAgentTestStack('knowledge-answer');
  ({ llm, admin } = stack);
  const knowledgeQueue = uniqueTaskQueue('knowledge-answer');
  app = await buildApp({
    pool: stack.pool,
    temporal: stack.temporal.client,
    logger: testLogger,
    auth: { jwtSecret: TEST_JWT_SECRET },
    agentRunsTaskQueue: stack.taskQueue,
    knowledgeTaskQueue: knowledgeQueue,
  });
  await app.ready();
  const started = await createKnowledgeWorker({
    connection: stack.temporal.nativeConnection,
    namespace: stack.temporal.namespace,
    pool: stack.pool,
    taskQueue: knowledgeQueue,
    workflowBundle: { codePath: requireEnv('TEST_WORKFLOW_BUNDLE') },
    dataConverter: testDataConverter,
    shutdownGraceTime: '2 seconds',
  });
  knowledgeWorker = started.worker;
  closeKnowledge = started.close;
  knowledgeRunning = knowledgeWorker.run();
  const org = await createOrgWithMembers(admin, ['owner', 'admin']);
  orgId = org.orgId;
  token = await signUserToken(org.userWithRole('admin'));
});

afterAll(async () => {
  knowledgeWorker?.shutdown();
  await knowledgeRunning;
  await closeKnowledge?.();
  await app?.close();
  await stack?.close();
});

function multipartPdf(name: string, bytes: Buffer, title: string) {
  const boundary = '----pdfanswer';
  const payload = Buffer.concat([
    Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="title"\r\n\r\n${title}\r\n`),
    Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="${name}"\r\ncontent-type: application/pdf\r\n\r\n`),
    bytes,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { payload, headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, authorization: `Bearer ${token}` } };
}

const ANSWER_SENTENCE = 'The Enterprise plan costs 1,200 EUR per month and includes a dedicated account manager.';

describe('an agent answering from an uploaded PDF', () => {
  it('finds the passage with knowledge_search and answers citing the document, title and passage', async () => {
    // Page 1 is long enough to fill passages of its own, so the answer sits at a later position.
    const filler = Array.from({ length: 14 }, (_, i) => `Section ${i + 1}: our offices are open on weekdays and the team replies to e-mail the same day.`);
    const pdf = makePdf([filler, ['Enterprise', ANSWER_SENTENCE, 'Volume discounts start at 50 seats.']]);
    const form = multipartPdf('price-list.pdf', pdf, 'Price list 2026');
    const uploaded = await app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/knowledge`, ...form });
    expect(uploaded.statusCode).toBe(201);
    const documentId: string = uploaded.json().id;
    let doc: { status: string; pageCount: number | null; progress: { chunksTotal: number | null } } | undefined;
    for (const deadline = Date.now() + 60_000; doc?.status !== 'ready'; await new Promise((r) => setTimeout(r, 200))) {
      doc = (await app.inject({ method: 'GET', url: `/v1/orgs/${orgId}/knowledge/${documentId}`, headers: { authorization: `Bearer ${token}` } })).json();
      expect(doc!.status).not.toBe('failed');
      if (Date.now() > deadline) throw new Error(`the PDF is still ${doc!.status}`);
    }
    expect(doc).toMatchObject({ pageCount: 2 });
    const { rows: chunks } = await admin.query<{ position: number }>(
      `select position from public.knowledge_chunks where document_id = $1 and passage like '%' || $2 || '%' order by position limit 1`,
      [documentId, '1,200 EUR per month'],
    );
    const position = chunks[0]!.position;
    expect(position).toBeGreaterThan(0);
    const citation = `[Price list 2026, passage ${position + 1}]`;

    const agent = await app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgId}/agents`,
      headers: { authorization: `Bearer ${token}` },
      payload: { name: 'Sales assistant', model: 'test/model', instructions: 'Answer from the knowledge base and cite it.', allowedTools: ['knowledge_search'] },
    });
    expect(agent.statusCode).toBe(201);
    // The model searches first; its answer is built from the tool result it received, so the
    // citation in the run's output is the one knowledge_search handed over.
    llm.enqueue({ kind: 'tool_calls', calls: [{ id: 'call_search', name: 'knowledge_search', arguments: JSON.stringify({ query: 'Enterprise plan price per month' }) }] });
    llm.setReplyFor(
      (body) => body.messages.some((m) => m.role === 'tool'),
      (body: FakeLlmRequestBody) => {
        const top = JSON.parse(body.messages.find((m) => m.role === 'tool')!.content!).results[0];
        return { kind: 'text', content: `Enterprise is 1,200 EUR a month ${top.citation}.` };
      },
    );
    const run = await app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgId}/agents/${agent.json().id}/runs`,
      headers: { authorization: `Bearer ${token}` },
      payload: { input: 'How much is the Enterprise plan?' },
    });
    expect(run.statusCode).toBe(201);
    const runId: string = run.json().id;
    let view: { status: string; output: string | null } | undefined;
    for (const deadline = Date.now() + 60_000; !['completed', 'failed', 'cancelled'].includes(view?.status ?? ''); await new Promise((r) => setTimeout(r, 200))) {
      view = (await app.inject({ method: 'GET', url: `/v1/orgs/${orgId}/runs/${runId}`, headers: { authorization: `Bearer ${token}` } })).json();
      if (Date.now() > deadline) throw new Error(`the run is still ${view!.status}`);
    }

    // What the model received: the PDF's passage with its document id, title and position.
    const chat = llm.requests.filter((r) => r.path === '/v1/chat/completions').map((r) => r.body as FakeLlmRequestBody);
    expect(chat).toHaveLength(2);
    expect(chat[0]!.tools?.find((t) => t.function.name === 'knowledge_search')?.function.description).toMatch(/cite it as \[title, passage N\]/);
    const toolMessage = chat[1]!.messages.find((m) => m.role === 'tool')!;
    expect(toolMessage.tool_call_id).toBe('call_search');
    const results = JSON.parse(toolMessage.content!).results;
    expect(results[0]).toMatchObject({ documentId, title: 'Price list 2026', position, citation });
    expect(results[0].passage).toContain(ANSWER_SENTENCE);
    // The run's answer carries the citation, and its durable events record the tool result.
    expect(view).toMatchObject({ status: 'completed', output: `Enterprise is 1,200 EUR a month ${citation}.` });
    const { rows: events } = await admin.query<{ payload: { name: string; result: { results: Array<{ documentId: string; citation: string }> } } }>(
      `select payload from public.run_events where run_id = $1 and type = 'tool.completed'`,
      [runId],
    );
    expect(events).toHaveLength(1);
    expect(events[0]!.payload.name).toBe('knowledge_search');
    expect(events[0]!.payload.result.results[0]).toMatchObject({ documentId, citation });
  });
});
