/**
 * Turning a document's text into what search stores: overlapping passages (chunks) and the
 * document's vocabulary (terms, for typo and product-code matching).
 */

export interface Chunk {
  position: number;
  passage: string;
}

export interface ChunkingOptions {
  /** Passages aim for this many characters… */
  targetChars: number;
  /** …never exceed this many… */
  maxChars: number;
  /** …and repeat about this many characters of the previous passage, so a fact split at a border is whole in one of them. */
  overlapChars: number;
}

export const DEFAULT_CHUNKING: ChunkingOptions = { targetChars: 900, maxChars: 1400, overlapChars: 180 };

/** Sentences and short lines: the units passages are packed from. */
function units(text: string, maxChars: number): string[] {
  const out: string[] = [];
  for (const paragraph of text.split(/\n\s*\n+/)) {
    const clean = paragraph.replace(/[ \t\f\v\r]+/g, ' ').replace(/ ?\n ?/g, '\n').trim();
    if (!clean) continue;
    // Split after sentence ends and line breaks; keep the separator with the sentence.
    for (const sentence of clean.split(/(?<=[.!?…;])\s+|\n/u)) {
      const s = sentence.trim();
      if (!s) continue;
      for (let i = 0; i < s.length; i += maxChars) out.push(s.slice(i, i + maxChars));
    }
    out.push('\n');
  }
  return out;
}

export function chunkText(text: string, opts: ChunkingOptions = DEFAULT_CHUNKING): Chunk[] {
  const chunks: Chunk[] = [];
  let current: string[] = [];
  let length = 0;
  const flush = () => {
    const passage = current.join(' ').replace(/ ?\n ?/g, '\n').replace(/\n{2,}/g, '\n').trim();
    if (passage) chunks.push({ position: chunks.length, passage });
    // Carry the last sentences (up to the overlap) into the next passage.
    const carried: string[] = [];
    let carriedLength = 0;
    for (let i = current.length - 1; i >= 0; i--) {
      const unit = current[i]!;
      if (unit === '\n') continue;
      if (carriedLength + unit.length > opts.overlapChars) break;
      carried.unshift(unit);
      carriedLength += unit.length + 1;
    }
    current = carried;
    length = carriedLength;
  };
  let fresh = 0;
  for (const unit of units(text, opts.maxChars)) {
    if (unit !== '\n' && length + unit.length > opts.maxChars && fresh > 0) {
      flush();
      fresh = 0;
    }
    current.push(unit);
    length += unit.length + 1;
    if (unit !== '\n') fresh++;
    if (length >= opts.targetChars && unit === '\n') {
      flush();
      fresh = 0;
    }
  }
  if (fresh > 0) flush();
  return chunks;
}

/**
 * Text as the full-text index and queries see it: lower case, ё as е, and punctuation outside
 * ASCII (« » — … “ ” №) as spaces. Done here, not in SQL, because Postgres lower-cases and
 * classifies non-ASCII characters by the database's LC_CTYPE: under the C locale «Тариф» stays
 * capitalised and «Бизнес» keeps its quotes as part of the word.
 */
export function searchText(text: string): string {
  return text
    .toLowerCase()
    .replace(/ё/g, 'е')
    .replace(/[^\p{L}\p{N}\p{M}\s\x21-\x7e]/gu, ' ');
}

const SEPARATORS = /[-_./]/g;

const CYRILLIC_TO_LATIN: Record<string, string> = {
  а: 'a', б: 'b', в: 'v', г: 'g', д: 'd', е: 'e', ё: 'e', ж: 'zh', з: 'z', и: 'i', й: 'i', к: 'k', л: 'l', м: 'm', н: 'n', о: 'o',
  п: 'p', р: 'r', с: 's', т: 't', у: 'u', ф: 'f', х: 'h', ц: 'ts', ч: 'ch', ш: 'sh', щ: 'sch', ъ: '', ы: 'y', ь: '', э: 'e', ю: 'yu', я: 'ya',
};

/** Separators removed, Cyrillic transliterated: the ASCII form pg_trgm compares under any locale. */
export function compactForm(term: string): string {
  return term.replace(SEPARATORS, '').replace(/[а-яё]/g, (ch) => CYRILLIC_TO_LATIN[ch] ?? ch);
}

export const TOKEN = /[\p{L}\p{N}]+(?:[-_./][\p{L}\p{N}]+)*/gu;

export interface Term {
  term: string;
  compact: string;
}

/**
 * Words and codes as the tokenizer sees them, lower-cased, with their compact form (separators
 * removed, Cyrillic in Latin letters: 'kx-2040' and 'KX2040' share 'kx2040'; «тарифы» is 'tarify'). Short words without digits are left out:
 * trigram similarity says nothing useful about them.
 */
export function extractTerms(text: string, limit = 20_000): Term[] {
  const seen = new Map<string, string>();
  for (const match of searchText(text).matchAll(TOKEN)) {
    const term = match[0];
    if (term.length > 60 || seen.has(term)) continue;
    const compact = compactForm(term);
    if (compact.length === 0 || compact.length > 100) continue;
    if (compact.length < 3 && !/\d/.test(compact)) continue;
    seen.set(term, compact);
    if (seen.size >= limit) break;
  }
  return [...seen].map(([term, compact]) => ({ term, compact }));
}
