/**
 * The codec server: the Temporal UI (`--ui-codec-endpoint` / the UI's "Codec Server" setting)
 * and the CLI (`temporal workflow show --codec-endpoint … --codec-auth 'Bearer …'`) send it the
 * encrypted payloads of a history and get them back decrypted, so operators read runs while the
 * cluster's database keeps ciphertext only.
 *
 * It decrypts everything, so it is an operator tool on its own listener, never part of the
 * public API: every call needs an operator token, either as `Authorization: Bearer <token>` (CLI,
 * a UI behind SSO with "pass access token") or as the first path segment of the endpoint URL
 * (`http://host:8234/<token>`) for a UI without SSO, where the browser cannot add a header.
 * Request logging is off because that URL is a capability; payloads are never logged.
 */
import cors from '@fastify/cors';
import type { Payload } from '@temporalio/common';
import Fastify, { LogController, type FastifyReply, type FastifyRequest } from 'fastify';
import { constantTimeEqual, sha256Hex, type Keyring } from '../lib/crypto.js';
import type { Logger } from '../lib/logger.js';
import { AesGcmPayloadCodec } from '../lib/temporal-codec.js';

export interface CodecServerDeps {
  keyring: Keyring;
  /** Operator tokens accepted. */
  tokens: string[];
  /** Browser origins of the Temporal UI. */
  corsOrigins: string[];
  logger: Logger;
}

/** Payloads as the UI and CLI send them: protobuf JSON, bytes in base64. */
interface JsonPayload {
  metadata?: Record<string, string> | null;
  data?: string | null;
}

function fromJson(payload: JsonPayload): Payload {
  return {
    metadata: Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
    data: payload.data ? Buffer.from(payload.data, 'base64') : new Uint8Array(),
  };
}

function toJson(payload: Payload): JsonPayload {
  return {
    metadata: Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v ?? new Uint8Array()).toString('base64')])),
    data: Buffer.from(payload.data ?? new Uint8Array()).toString('base64'),
  };
}

function isPayloadBody(body: unknown): body is { payloads: JsonPayload[] } {
  if (typeof body !== 'object' || body === null || !Array.isArray((body as { payloads?: unknown }).payloads)) return false;
  return (body as { payloads: unknown[] }).payloads.every((p) => typeof p === 'object' && p !== null);
}

export async function buildCodecServer(deps: CodecServerDeps) {
  const codec = new AesGcmPayloadCodec(deps.keyring);
  const tokenHashes = deps.tokens.map((t) => sha256Hex(t.trim())).filter(Boolean);
  const app = Fastify({ loggerInstance: deps.logger, logController: new LogController({ disableRequestLogging: true }), bodyLimit: 8 * 1024 * 1024 });

  await app.register(cors, {
    origin: deps.corsOrigins,
    methods: ['POST'],
    allowedHeaders: ['content-type', 'x-namespace', 'authorization'],
    credentials: true,
    maxAge: 600,
  });

  const authorized = (request: FastifyRequest<{ Params: { token?: string } }>): boolean => {
    const header = request.headers.authorization;
    const given = request.params.token ?? (header?.startsWith('Bearer ') ? header.slice('Bearer '.length) : undefined);
    if (!given) return false;
    const hash = sha256Hex(given);
    // Compare against every token so the time taken does not reveal which one nearly matched.
    return tokenHashes.map((h) => constantTimeEqual(h, hash)).includes(true);
  };

  const problem = (reply: FastifyReply, status: number, type: string, detail: string) =>
    reply.code(status).type('application/problem+json').send({ type: `https://gpt-agent-platform.dev/problems/${type}`, title: type, status, detail });

  const handler = (direction: 'encode' | 'decode') => async (request: FastifyRequest<{ Params: { token?: string } }>, reply: FastifyReply) => {
    if (!authorized(request)) return problem(reply, 401, 'unauthenticated', 'An operator token is required.');
    if (!isPayloadBody(request.body)) return problem(reply, 400, 'malformed-body', 'Send {"payloads": [{"metadata": {…}, "data": "…"}]}.');
    const payloads = request.body.payloads.map(fromJson);
    try {
      const result = direction === 'encode' ? await codec.encode(payloads) : await codec.decode(payloads);
      request.log.info({ direction, payloads: payloads.length, namespace: request.headers['x-namespace'] }, 'codec request');
      return reply.send({ payloads: result.map(toJson) });
    } catch (err) {
      request.log.warn({ direction, error: (err as Error).message }, 'codec request failed');
      return problem(reply, 422, 'undecodable-payload', (err as Error).message);
    }
  };

  app.post('/encode', handler('encode'));
  app.post('/decode', handler('decode'));
  app.post('/:token/encode', handler('encode'));
  app.post('/:token/decode', handler('decode'));
  app.get('/healthz', async () => ({ status: 'ok' }));
  return app;
}
