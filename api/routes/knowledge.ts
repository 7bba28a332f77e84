import fastifyMultipart from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { sniffMediaType } from '../../integrations/documents/media-type.js';
import { pageQuery } from '../pagination.js';
import { ProblemError } from '../problems.js';
import { problemSchema } from '../schemas.js';
import type { KnowledgeContent, KnowledgeService } from '../services/knowledge.js';
import type { UsageService } from '../services/usage.js';
import { KNOWLEDGE_REFRESH_INTERVALS, type KnowledgeRefreshInterval } from '../../workflows/knowledge-ids.js';

const documentSchema = z.object({
  id: z.uuid(),
  orgId: z.uuid(),
  title: z.string(),
  body: z.string(),
  status: z.enum(['pending', 'processing', 'ready', 'failed']),
  failureReason: z.string().nullable(),
  source: z.object({
    kind: z.enum(['text', 'file', 'url']),
    url: z.string().nullable(),
    fileName: z.string().nullable(),
    mediaType: z.string().nullable(),
    byteSize: z.number().nullable(),
  }),
  revision: z.number(),
  progress: z.object({ chunksTotal: z.number().nullable(), chunksDone: z.number() }),
  pageCount: z.number().nullable(),
  language: z.string().nullable(),
  ingestedAt: z.string().nullable(),
  refresh: z
    .object({
      every: z.enum(KNOWLEDGE_REFRESH_INTERVALS),
      scheduleId: z.string(),
      nextRunAt: z.string().nullable().describe('Next scheduled re-fetch; null when Temporal did not answer in time'),
      lastFetchedAt: z.string().nullable(),
      lastOutcome: z.enum(['changed', 'unchanged', 'failed']).nullable(),
      lastError: z.string().nullable().describe('Why the last re-fetch failed; the chunks of the last good fetch are still searched'),
    })
    .nullable()
    .describe('Re-fetch schedule of a web page; null when it is fetched once'),
  createdAt: z.string(),
  updatedAt: z.string(),
});
const title = z.string().trim().min(1).max(500);
const textBody = z.strictObject({ title, body: z.string().max(200_000) });
/** How often a web page is fetched again (a Temporal Schedule); its chunks change only when its text did. */
const refresh = z.strictObject({ every: z.enum(KNOWLEDGE_REFRESH_INTERVALS) });
const urlBody = z.strictObject({ title: title.optional(), url: z.url({ protocol: /^https?$/ }).max(2000), refresh: refresh.nullish() });
const patchBody = z.strictObject({ title: title.optional(), body: z.string().max(200_000).optional(), refresh: refresh.nullish().describe('Web pages only; null stops re-fetching') });
const orgParams = z.object({ orgId: z.uuid() });
const docParams = z.object({ orgId: z.uuid(), documentId: z.uuid() });
const problems = { 400: problemSchema, 403: problemSchema, 404: problemSchema, 413: problemSchema, 415: problemSchema };

export interface KnowledgeRouteOptions {
  /** Largest uploaded file (default 20 MiB). */
  maxUploadBytes?: number;
}

const DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024;

/**
 * A multipart upload (`file`, optional `title`), streamed into memory up to the cap, its type
 * decided by its bytes. Anything else in the form is refused rather than ignored.
 */
async function readUpload(request: FastifyRequest, maxBytes: number): Promise<Upload> {
  let fileTitle: string | undefined;
  let content: KnowledgeContent | undefined;
  try {
    for await (const part of request.parts({ limits: { fileSize: maxBytes, files: 1, fields: 5, fieldSize: 1000 } })) {
      if (part.type === 'file') {
        if (part.fieldname !== 'file') throw new ProblemError('validation-error', `Unexpected file field "${part.fieldname}"; send the document as "file".`);
        const bytes = await part.toBuffer();
        if (bytes.length === 0) throw new ProblemError('validation-error', 'The uploaded file is empty.');
        const mediaType = sniffMediaType(bytes, part.filename);
        if (!mediaType) throw new ProblemError('unsupported-media-type', 'The file is not a PDF, DOCX, HTML, Markdown or plain-text (UTF-8) document.');
        content = { kind: 'file', bytes, mediaType, fileName: part.filename ? part.filename.slice(0, 255) : null };
      } else if (part.fieldname === 'title') {
        const parsed = title.safeParse(part.value);
        if (!parsed.success) throw new ProblemError('validation-error', 'title: must be 1 to 500 characters.');
        fileTitle = parsed.data;
      } else {
        throw new ProblemError('validation-error', `Unexpected form field "${part.fieldname}"; send "file" and optionally "title".`);
      }
    }
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'FST_REQ_FILE_TOO_LARGE') throw new ProblemError('payload-too-large', `The file is larger than ${maxBytes} bytes.`);
    if (code === 'FST_FILES_LIMIT_REACHED' || code === 'FST_FIELDS_LIMIT_REACHED' || code === 'FST_PARTS_LIMIT_REACHED') {
      throw new ProblemError('validation-error', 'Send one "file" and optionally a "title".');
    }
    throw err;
  }
  if (!content) throw new ProblemError('validation-error', 'The form has no "file".');
  return { ...(fileTitle ? { title: fileTitle } : {}), content };
}

interface Upload {
  title?: string;
  content: KnowledgeContent;
  refresh?: KnowledgeRefreshInterval;
}

function fromJson(body: z.infer<typeof textBody> | z.infer<typeof urlBody> | null | undefined): Upload {
  if (!body) throw new ProblemError('validation-error', 'Send JSON { title, body }, JSON { url, title?, refresh? } or a multipart form with "file".');
  if ('url' in body) return { ...(body.title ? { title: body.title } : {}), content: { kind: 'url', url: body.url }, ...(body.refresh ? { refresh: body.refresh.every } : {}) };
  return { title: body.title, content: { kind: 'text', body: body.body } };
}

function defaultTitle(content: KnowledgeContent): string {
  if (content.kind === 'file') return (content.fileName ?? 'Uploaded document').replace(/\.[a-z0-9]{1,8}$/i, '').slice(0, 500) || 'Uploaded document';
  if (content.kind === 'url') return content.url.slice(0, 500);
  return 'Untitled';
}

/** The org's knowledge base (searched by the knowledge_search tool): members read, admins write. */
export function knowledgeRoutes(knowledge: KnowledgeService, opts: KnowledgeRouteOptions = {}): FastifyPluginAsyncZod {
  const maxUploadBytes = opts.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES;
  return async (app) => {
    await app.register(fastifyMultipart, { limits: { fileSize: maxUploadBytes, files: 1 } });
    const contentOf = async (request: FastifyRequest, body: z.infer<typeof textBody> | z.infer<typeof urlBody> | null | undefined) =>
      request.isMultipart() ? readUpload(request, maxUploadBytes) : fromJson(body);

    app.post('/orgs/:orgId/knowledge', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'createKnowledgeDocument',
        summary: 'Add a knowledge document: JSON text, JSON { url, refresh? }, or a multipart upload (file: PDF, DOCX, HTML, Markdown, text)',
        description:
          'Ingestion runs in the background; the document reports status (pending, processing, ready, failed) and progress. A web page with `refresh` is fetched again on a schedule and re-indexed only when its text changed.',
        params: orgParams,
        body: z.union([textBody, urlBody]).nullish(),
        response: { 201: documentSchema, 409: problemSchema, ...problems, 503: problemSchema },
      },
      handler: async (request, reply) => {
        const upload = await contentOf(request, request.body);
        const doc = await knowledge.create(request.principal, request.params.orgId, { title: upload.title ?? defaultTitle(upload.content), content: upload.content, refresh: upload.refresh ?? null });
        reply.header('location', `/v1/orgs/${doc.orgId}/knowledge/${doc.id}`);
        return reply.code(201).send(doc);
      },
    });
    app.get('/orgs/:orgId/knowledge', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: {
        operationId: 'listKnowledgeDocuments',
        summary: 'List knowledge documents, optionally full-text filtered by q or by status',
        params: orgParams,
        querystring: z.object({ q: z.string().min(1).max(500).optional(), status: z.enum(['pending', 'processing', 'ready', 'failed']).optional(), ...pageQuery }),
        response: { 200: z.object({ items: z.array(documentSchema), nextCursor: z.string().nullable() }), ...problems },
      },
      handler: async (request) => knowledge.list(request.principal, request.params.orgId, request.query),
    });
    app.get('/orgs/:orgId/knowledge/:documentId', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: { operationId: 'getKnowledgeDocument', summary: 'Get a knowledge document with its ingestion status and progress', params: docParams, response: { 200: documentSchema, ...problems } },
      handler: async (request) => knowledge.get(request.principal, request.params.orgId, request.params.documentId),
    });
    app.put('/orgs/:orgId/knowledge/:documentId', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'replaceKnowledgeDocument',
        summary: "Replace a knowledge document's content (same forms as POST, refresh included); its chunks are replaced at once when the new revision is ingested",
        params: docParams,
        body: z.union([textBody, urlBody]).nullish(),
        response: { 200: documentSchema, ...problems, 503: problemSchema },
      },
      handler: async (request) => {
        const upload = await contentOf(request, request.body);
        return knowledge.update(request.principal, request.params.orgId, request.params.documentId, { title: upload.title, content: upload.content, refresh: upload.refresh ?? null });
      },
    });
    app.patch('/orgs/:orgId/knowledge/:documentId', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'updateKnowledgeDocument',
        summary: "Change a knowledge document's title or text (it is ingested again) or a web page's re-fetch schedule (refresh; null stops it)",
        params: docParams,
        body: patchBody,
        response: { 200: documentSchema, ...problems, 503: problemSchema },
      },
      handler: async (request) =>
        knowledge.update(request.principal, request.params.orgId, request.params.documentId, {
          title: request.body.title,
          content: request.body.body === undefined ? undefined : { kind: 'text', body: request.body.body },
          refresh: request.body.refresh === undefined ? undefined : (request.body.refresh?.every ?? null),
        }),
    });
    app.delete('/orgs/:orgId/knowledge/:documentId', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: { operationId: 'deleteKnowledgeDocument', summary: 'Delete a knowledge document, its chunks and its re-fetch schedule', params: docParams, response: { 204: z.null(), ...problems, 503: problemSchema } },
      handler: async (request, reply) => {
        await knowledge.remove(request.principal, request.params.orgId, request.params.documentId);
        return reply.code(204).send(null);
      },
    });
  };
}

const isoDay = z.iso.date();

/** Metered usage per UTC day: runs, LLM calls, tokens and cost. */
export function usageRoutes(usage: UsageService): FastifyPluginAsyncZod {
  return async (app) => {
    const counters = { runs: z.number(), llmCalls: z.number(), inputTokens: z.number(), outputTokens: z.number(), costUsd: z.number() };
    app.get('/orgs/:orgId/usage', {
      config: { auth: 'bearer', minRole: 'member' },
      schema: {
        operationId: 'getUsage',
        summary: 'Usage per day between from and to (inclusive, UTC)',
        params: orgParams,
        querystring: z.object({ from: isoDay, to: isoDay }),
        response: {
          200: z.object({ from: z.string(), to: z.string(), items: z.array(z.object({ day: z.string(), ...counters })), totals: z.object(counters) }),
          400: problemSchema,
          404: problemSchema,
        },
      },
      handler: async (request) => usage.getUsage(request.principal, request.params.orgId, request.query.from, request.query.to),
    });
  };
}
