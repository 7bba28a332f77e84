import { z } from 'zod';
import { ProblemError } from './problems.js';

/**
 * Keyset pagination: the cursor is the (created_at, id) of the last row served, opaque to the
 * client (base64url JSON). Stable under inserts, and every page is an index range scan.
 */
export const MAX_PAGE_SIZE = 100;
export const DEFAULT_PAGE_SIZE = 20;

export const pageQuery = {
  limit: z.coerce.number().int().min(1).default(DEFAULT_PAGE_SIZE).transform((n) => Math.min(n, MAX_PAGE_SIZE)),
  cursor: z.string().max(200).optional(),
};

export interface Cursor {
  createdAt: string;
  id: string;
}

const cursorSchema = z.object({ createdAt: z.iso.datetime({ offset: true }), id: z.uuid() });

export function encodeCursor(row: { created_at: Date; id: string }): string {
  return encodeKeysetCursor({ createdAt: row.created_at.toISOString(), id: row.id });
}

export function decodeCursor(cursor: string | undefined): Cursor | undefined {
  return decodeKeysetCursor(cursorSchema, cursor);
}

/** A cursor over another key than (created_at, id): the same opaque base64url JSON. */
export function encodeKeysetCursor(key: object): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

export function decodeKeysetCursor<T>(schema: z.ZodType<T>, cursor: string | undefined): T | undefined {
  if (cursor === undefined) return undefined;
  try {
    return schema.parse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')));
  } catch {
    throw new ProblemError('validation-error', 'The cursor is invalid; use the nextCursor of a previous page.', [
      { path: 'querystring.cursor', message: 'is invalid' },
    ]);
  }
}

/** Fetch `limit + 1` rows; this splits them into the page and the cursor of the next one. */
export function toPage<R extends { created_at: Date; id: string }, V>(rows: R[], limit: number, view: (row: R) => V) {
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return { items: page.map(view), nextCursor: rows.length > limit && last ? encodeCursor(last) : null };
}
