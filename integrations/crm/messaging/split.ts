/**
 * Long answers are split to the channel's limit, at the most natural boundary that fits:
 * a paragraph, then a line, then a sentence, then a word, and only as a last resort mid-word.
 * Parts are trimmed and never empty; their concatenation keeps every word in order.
 */
export function splitForChannel(text: string, maxChars: number): string[] {
  if (maxChars < 1) throw new RangeError('maxChars must be positive');
  const parts: string[] = [];
  let rest = text.trim();
  while (rest.length > maxChars) {
    const window = rest.slice(0, maxChars + 1);
    const cut = lastBoundary(window, maxChars);
    parts.push(rest.slice(0, cut).trim());
    rest = rest.slice(cut).trim();
  }
  if (rest.length > 0) parts.push(rest);
  return parts.filter((p) => p.length > 0);
}

// Boundaries in order of preference; each is searched in the second half of the window, so a
// part is never tiny because a boundary happened to sit near its start.
const boundaries = [/\n\s*\n/g, /\n/g, /[.!?…](?=\s)/g, /\s/g];

function lastBoundary(window: string, maxChars: number): number {
  const floor = Math.floor(maxChars / 2);
  for (const pattern of boundaries) {
    let best = -1;
    for (const m of window.matchAll(pattern)) {
      // Sentence ends keep their punctuation; whitespace boundaries cut before the space.
      const end = pattern.source.startsWith('[.!?') ? m.index + m[0].length : m.index;
      if (end >= floor && end <= maxChars) best = end;
    }
    if (best > 0) return best;
  }
  return maxChars;
}
