import { randomBytes } from 'node:crypto';
import { WorkflowFailedError } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { temporal as proto } from '@temporalio/proto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCodecServer } from '../../api/codec-server.js';
import { parseKeyring } from '../../lib/crypto.js';
import { AesGcmPayloadCodec, ENCRYPTED_ENCODING } from '../../lib/temporal-codec.js';
import { agentRunWorkflowId } from '../../workflows/task-queues.js';
import type { FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import { startAgentTestStack, type AgentTestStack } from '../support/agent-stack.js';
import { createAgent, createOrgWithMembers, createRun } from '../support/db.js';
import { TEST_CODEC_KEYS, testLogger, type TestTemporal } from '../support/temporal.js';

const key = () => randomBytes(32).toString('base64');
const utf8 = (s: string) => new TextEncoder().encode(s);
const jsonPayload = (value: unknown): Payload => ({ metadata: { encoding: utf8('json/plain') }, data: utf8(JSON.stringify(value)) });

describe('AesGcmPayloadCodec', () => {
  it('round-trips payloads, labels them with the key id, and leaves no plaintext behind', async () => {
    const codec = new AesGcmPayloadCodec(parseKeyring(`k1:${key()}`));
    const [encoded] = await codec.encode([jsonPayload({ note: 'CANARY-UNIT' })]);
    expect(Buffer.from(encoded!.metadata!.encoding!).toString()).toBe(ENCRYPTED_ENCODING);
    expect(Buffer.from(encoded!.metadata!['encryption-key-id']!).toString()).toBe('k1');
    expect(Buffer.from(proto.api.common.v1.Payload.encode(encoded!).finish()).includes('CANARY-UNIT')).toBe(false);
    const [decoded] = await codec.decode([encoded!]);
    expect(JSON.parse(Buffer.from(decoded!.data!).toString())).toEqual({ note: 'CANARY-UNIT' });
  });

  it('decrypts payloads of a retired-but-listed key after rotation, and refuses unknown keys and tampering', async () => {
    const k1 = `k1:${key()}`;
    const before = new AesGcmPayloadCodec(parseKeyring(k1));
    const [old] = await before.encode([jsonPayload('old')]);

    const rotated = new AesGcmPayloadCodec(parseKeyring(`${k1},k2:${key()}`, 'k2'));
    const [fresh] = await rotated.encode([jsonPayload('new')]);
    expect(Buffer.from(fresh!.metadata!['encryption-key-id']!).toString()).toBe('k2');
    const decoded = await rotated.decode([old!, fresh!]);
    expect(decoded.map((p) => JSON.parse(Buffer.from(p.data!).toString()))).toEqual(['old', 'new']);

    const withoutK1 = new AesGcmPayloadCodec(parseKeyring(`k2:${key()}`));
    await expect(withoutK1.decode([old!])).rejects.toThrow(/key k1 is not in TEMPORAL_CODEC_KEYS/);

    const tampered = { ...old!, data: Buffer.from(old!.data!).fill(0, 20, 21) };
    await expect(before.decode([tampered])).rejects.toThrow(/does not decrypt/);
    // A payload relabelled with another key id fails even if that key exists.
    const relabelled = { ...fresh!, metadata: { ...fresh!.metadata, 'encryption-key-id': utf8('k1') } };
    await expect(rotated.decode([relabelled])).rejects.toThrow(/does not decrypt/);
  });

  it('passes payloads written before encryption was switched on through unchanged', async () => {
    const codec = new AesGcmPayloadCodec(parseKeyring(`k1:${key()}`));
    const plain = jsonPayload({ legacy: true });
    expect(await codec.decode([plain])).toEqual([plain]);
  });
});

describe('encrypted Temporal histories', () => {
  let stack: AgentTestStack;
  let temporal: TestTemporal;
  let llm: FakeLlmServer;
  let admin: pg.Pool;
  let taskQueue: string;
  const operatorToken = randomBytes(32).toString('base64url');
  const uiOrigin = 'http://127.0.0.1:8233';

  beforeAll(async () => {
    stack = await startAgentTestStack('payload-encryption');
    ({ temporal, llm, admin, taskQueue } = stack);
  });

  afterAll(async () => {
    await stack?.close();
  });

  async function failingRunWithCanaries() {
    const { orgId } = await createOrgWithMembers(admin, ['owner']);
    const agentId = await createAgent(admin, orgId, { model: 'test/model-a' });
    const runId = await createRun(admin, orgId, agentId, { input: 'CANARY-RUN-INPUT' });
    // The provider's error text is the kind of thing that quotes tenant data back at us.
    llm.enqueue({ kind: 'error', status: 400, message: 'CANARY-FAILURE-MESSAGE: the prompt mentions Jane Doe' });
    const workflowId = agentRunWorkflowId(runId);
    const failure = await temporal.client.workflow
      .execute('agentRun', {
        taskQueue,
        workflowId,
        // An extra field the workflow ignores and a memo: both are payloads the codec must encrypt.
        args: [{ orgId, agentId, runId, note: 'CANARY-WORKFLOW-ARG' }],
        memo: { summary: 'CANARY-MEMO' },
      })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    return { workflowId, failure };
  }

  it('stores no readable canary anywhere in the raw history, failure messages and stack traces included', async () => {
    const { workflowId, failure } = await failingRunWithCanaries();

    // With the codec (the test client is configured like the API), the failure reads normally.
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    expect((failure as WorkflowFailedError).cause?.message).toContain('CANARY-FAILURE-MESSAGE');

    // Without it: the raw history as the cluster stores it.
    const history = await temporal.client.workflow.getHandle(workflowId).fetchHistory();
    const raw = Buffer.from(proto.api.history.v1.History.encode(history).finish());
    const json = JSON.stringify(proto.api.history.v1.History.toObject(history as proto.api.history.v1.History, { bytes: String }));
    for (const haystack of [raw.toString('latin1'), json]) {
      for (const canary of ['CANARY-WORKFLOW-ARG', 'CANARY-MEMO', 'CANARY-FAILURE-MESSAGE', 'Jane Doe', 'CANARY-RUN-INPUT']) {
        expect(haystack, canary).not.toContain(canary);
      }
      // Stack traces name our source files; they are encrypted with the message.
      expect(haystack).not.toMatch(/activities\/agent-run|workflows\/agent-run/);
    }
    const failedEvent = history.events!.find((e) => e.workflowExecutionFailedEventAttributes)!;
    expect(failedEvent.workflowExecutionFailedEventAttributes!.failure!.message).toBe('Encoded failure');
    expect(failedEvent.workflowExecutionFailedEventAttributes!.failure!.stackTrace ?? '').toBe('');
    const started = history.events!.find((e) => e.workflowExecutionStartedEventAttributes)!.workflowExecutionStartedEventAttributes!;
    const inputPayload = started.input!.payloads![0]!;
    expect(Buffer.from(inputPayload.metadata!.encoding!).toString()).toBe(ENCRYPTED_ENCODING);

    // And the codec (the same keyring the workers use) turns it back into the workflow's input.
    const codec = new AesGcmPayloadCodec(parseKeyring(TEST_CODEC_KEYS));
    const [decoded] = await codec.decode([inputPayload as Payload]);
    expect(JSON.parse(Buffer.from(decoded!.data!).toString())).toMatchObject({ note: 'CANARY-WORKFLOW-ARG' });
  });

  it('serves the Temporal UI: decodes with an operator token (header or URL), refuses without, CORS only for the UI origin', async () => {
    const { workflowId } = await failingRunWithCanaries();
    const history = await temporal.client.workflow.getHandle(workflowId).fetchHistory();
    const started = history.events!.find((e) => e.workflowExecutionStartedEventAttributes)!.workflowExecutionStartedEventAttributes!;
    const failed = history.events!.find((e) => e.workflowExecutionFailedEventAttributes)!.workflowExecutionFailedEventAttributes!;
    const asJson = (p: { metadata?: Record<string, Uint8Array> | null; data?: Uint8Array | null }) => ({
      metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
      data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
    });
    const body = { payloads: [asJson(started.input!.payloads![0]!), asJson(failed.failure!.encodedAttributes!)] };

    const server = await buildCodecServer({
      keyring: parseKeyring(TEST_CODEC_KEYS),
      tokens: [operatorToken],
      corsOrigins: [uiOrigin],
      logger: testLogger,
    });
    try {
      const viaHeader = await server.inject({
        method: 'POST',
        url: '/decode',
        headers: { authorization: `Bearer ${operatorToken}`, 'x-namespace': 'default', origin: uiOrigin },
        payload: body,
      });
      expect(viaHeader.statusCode).toBe(200);
      expect(viaHeader.headers['access-control-allow-origin']).toBe(uiOrigin);
      const texts = (viaHeader.json() as { payloads: Array<{ data: string }> }).payloads.map((p) => Buffer.from(p.data, 'base64').toString());
      expect(texts[0]).toContain('CANARY-WORKFLOW-ARG');
      expect(texts[1]).toContain('CANARY-FAILURE-MESSAGE');
      // The failure's stack trace is in there too, for the operator.
      expect(texts[1]).toContain('stack_trace');

      const viaUrl = await server.inject({ method: 'POST', url: `/${operatorToken}/decode`, payload: body });
      expect(viaUrl.statusCode).toBe(200);

      for (const headers of [{}, { authorization: 'Bearer wrong-token' }]) {
        const denied = await server.inject({ method: 'POST', url: '/decode', headers, payload: body });
        expect(denied.statusCode).toBe(401);
        expect(denied.body).not.toContain('CANARY');
      }
      expect((await server.inject({ method: 'POST', url: '/not-the-token/decode', payload: body })).statusCode).toBe(401);

      const preflight = await server.inject({
        method: 'OPTIONS',
        url: '/decode',
        headers: { origin: uiOrigin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-namespace' },
      });
      expect(preflight.statusCode).toBe(204);
      expect(preflight.headers['access-control-allow-origin']).toBe(uiOrigin);
      const foreign = await server.inject({
        method: 'OPTIONS',
        url: '/decode',
        headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
      });
      expect(foreign.headers['access-control-allow-origin']).toBeUndefined();

      // Encoding (the UI uses it to send signals) produces what the workers can read.
      const encoded = await server.inject({
        method: 'POST',
        url: '/encode',
        headers: { authorization: `Bearer ${operatorToken}` },
        payload: { payloads: [asJson(jsonPayload('from-the-ui'))] },
      });
      const [roundTrip] = await new AesGcmPayloadCodec(parseKeyring(TEST_CODEC_KEYS)).decode(
        (encoded.json() as { payloads: Array<{ metadata: Record<string, string>; data: string }> }).payloads.map((p) => ({
          metadata: Object.fromEntries(Object.entries(p.metadata).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
          data: Buffer.from(p.data, 'base64'),
        })),
      );
      expect(JSON.parse(Buffer.from(roundTrip!.data!).toString())).toBe('from-the-ui');
    } finally {
      await server.close();
    }
  });
});
