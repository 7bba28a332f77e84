/**
 * Text out of an uploaded document, in a worker thread with a heap cap and a deadline: a corrupt,
 * encrypted or hostile file fails with a reason the document's owner can act on, and never takes
 * the worker process (and every other activity in it) down with it.
 */
import { Worker } from 'node:worker_threads';
import type { KnowledgeMediaType } from './media-type.js';
import { zipBombReason } from './zip.js';

export type ExtractionFailureCode = 'corrupt' | 'encrypted' | 'too_large' | 'timeout' | 'out_of_memory' | 'empty' | 'unsupported';

export class ExtractionError extends Error {
  constructor(
    readonly code: ExtractionFailureCode,
    message: string,
  ) {
    super(message);
    this.name = 'ExtractionError';
  }
}

export interface ExtractionLimits {
  timeoutMs: number;
  /** Old-generation heap of the extraction thread. */
  heapMb: number;
  /** Declared uncompressed size of a DOCX. */
  maxUnzippedBytes: number;
}

export const DEFAULT_EXTRACTION_LIMITS: ExtractionLimits = { timeoutMs: 60_000, heapMb: 256, maxUnzippedBytes: 100 * 1024 * 1024 };

export interface ExtractedText {
  text: string;
  /** PDF pages; null for formats without pages. */
  pages: number | null;
}

const threadUrl = new URL('./extract-thread.mjs', import.meta.url);

type ThreadAnswer = { ok: true; text: string; pages: number | null } | { ok: false; code: ExtractionFailureCode; message: string };

export async function extractText(bytes: Uint8Array, mediaType: KnowledgeMediaType, limits: ExtractionLimits = DEFAULT_EXTRACTION_LIMITS): Promise<ExtractedText> {
  if (mediaType === 'application/vnd.openxmlformats-officedocument.wordprocessingml.document') {
    const reason = zipBombReason(bytes, { maxUncompressedBytes: limits.maxUnzippedBytes, maxRatio: 200, maxEntries: 5000 });
    if (reason) throw new ExtractionError(reason.includes('corrupt') ? 'corrupt' : 'too_large', `The DOCX was not opened: ${reason}.`);
  }
  const answer = await new Promise<ThreadAnswer>((resolve, reject) => {
    const worker = new Worker(threadUrl, {
      workerData: { bytes, mediaType },
      resourceLimits: { maxOldGenerationSizeMb: limits.heapMb, maxYoungGenerationSizeMb: Math.min(64, limits.heapMb / 4) },
      stdout: true,
      stderr: true,
    });
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
      void worker.terminate();
    };
    const timer = setTimeout(
      () => settle(() => reject(new ExtractionError('timeout', `Extracting the text took longer than ${limits.timeoutMs / 1000} s.`))),
      limits.timeoutMs,
    );
    worker.once('message', (message: ThreadAnswer) => settle(() => resolve(message)));
    worker.once('error', (error: Error & { code?: string }) =>
      settle(() =>
        reject(
          error.code === 'ERR_WORKER_OUT_OF_MEMORY'
            ? new ExtractionError('out_of_memory', `Extracting the text needed more than ${limits.heapMb} MB of memory.`)
            : error,
        ),
      ),
    );
    worker.once('exit', (code) => settle(() => reject(new Error(`the extraction thread exited with code ${code} before answering`))));
  });
  if (!answer.ok) throw new ExtractionError(answer.code, answer.message);
  // Postgres text cannot hold NUL characters; some PDFs' text layers contain them.
  const text = answer.text.replaceAll(String.fromCharCode(0), '').trim();
  if (!text) throw new ExtractionError('empty', 'The document contains no text (a scanned PDF needs OCR, which we do not do).');
  return { text, pages: answer.pages };
}

/** Text from an HTML page (fetched URLs): the same thread and limits. */
export function htmlToText(html: string, limits: ExtractionLimits = DEFAULT_EXTRACTION_LIMITS): Promise<ExtractedText> {
  return extractText(new TextEncoder().encode(html), 'text/html', limits);
}
