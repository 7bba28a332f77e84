/**
 * What an uploaded file is, judged by its bytes, never by its name or the Content-Type the
 * client claimed: a '.pdf' that is an executable is refused, a PDF called 'price.txt' is a PDF.
 */
import { zipEntryNames } from './zip.js';

export const KNOWLEDGE_MEDIA_TYPES = [
  'application/pdf',
  'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  'text/html',
  'text/markdown',
  'text/plain',
] as const;
export type KnowledgeMediaType = (typeof KNOWLEDGE_MEDIA_TYPES)[number];

const DOCX = 'application/vnd.openxmlformats-officedocument.wordprocessingml.document';

function startsWith(bytes: Uint8Array, signature: number[], offset = 0): boolean {
  return signature.every((b, i) => bytes[offset + i] === b);
}

/** Valid UTF-8 without NUL bytes (text files), as decoded text; undefined for binary. */
export function decodeText(bytes: Uint8Array): string | undefined {
  const head = bytes.subarray(0, 64 * 1024);
  if (head.includes(0)) return undefined;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * The media type of `bytes`, or undefined when it is none we ingest. `nameHint` (the file name)
 * only tells Markdown from plain text, which no byte signature can.
 */
export function sniffMediaType(bytes: Uint8Array, nameHint?: string): KnowledgeMediaType | undefined {
  if (startsWith(bytes, [0x25, 0x50, 0x44, 0x46, 0x2d])) return 'application/pdf'; // %PDF-
  if (startsWith(bytes, [0x50, 0x4b, 0x03, 0x04])) {
    // A zip: DOCX when it has the Word main part; other Office/zip files are refused.
    const names = zipEntryNames(bytes);
    return names?.includes('word/document.xml') ? DOCX : undefined;
  }
  const text = decodeText(bytes);
  if (text === undefined) return undefined;
  const head = text.slice(0, 2048).replace(/^\uFEFF/, '').trimStart().toLowerCase();
  if (head.startsWith('<!doctype html') || head.startsWith('<html') || /^<(head|body|meta|title|div|p|h1|article)[\s>]/.test(head)) return 'text/html';
  if (nameHint && /\.(md|markdown)$/i.test(nameHint)) return 'text/markdown';
  return 'text/plain';
}
