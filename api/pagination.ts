import { z } from 'zod';
import { ProblemError } from './problems.js';

/**
 * Keyset pagination: the cursor is the (created_at, id) of the last row served, opaque to the
 * client (base64url JSON). Stable under inserts, and every page is an index range scan.
 * created_at travels to the microsecond (timestamptz's precision): a JS Date keeps milliseconds,
 * so a cursor built from one would skip every later row within the same millisecond, including
 * rows written in one statement (one now()).
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

// Any precision: cursors issued before microseconds (milliseconds) still decode.
const cursorSchema = z.object({ createdAt: z.iso.datetime({ offset: true }), id: z.uuid() });

/**
 * The select-list item every (created_at, id) list adds: `column` as UTC text to the
 * microsecond, read back as `cursor_at`. `column` is SQL the caller writes, never input.
 */
export function cursorAt(column: string): string {
  return microsecondText(column, 'cursor_at');
}

/** `column` (timestamptz) as UTC ISO text to the microsecond, named `alias`: the key of a keyset cursor. */
export function microsecondText(column: string, alias: string): string {
  return `to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as ${alias}`;
}

export interface KeysetRow {
  /** From {@link cursorAt}. */
  cursor_at: string;
  id: string;
}

export function encodeCursor(row: KeysetRow): string {
  return encodeKeysetCursor({ createdAt: row.cursor_at, id: row.id });
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
export function toPage<R extends KeysetRow, V>(rows: R[], limit: number, view: (row: R) => V) {
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return { items: page.map(view), nextCursor: rows.length > limit && last ? encodeCursor(last) : null };
}
