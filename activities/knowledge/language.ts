/**
 * The language of a chunk of text, as the text search configuration it needs: 'ru' → 'russian',
 * 'en' → 'english', anything else → 'simple' (no stemming, which for a language we do not stem
 * is safer than stemming it as another).
 *
 * A script-and-function-word heuristic rather than a statistical detector (franc, cld): we only
 * choose between two stemmers, Russian and English are told apart by their alphabets, and the
 * remaining question (English or another Latin-script language, Russian or another Cyrillic one)
 * is answered by letters those languages have and English/Russian do not, and by how many of the
 * words are English function words. It is deterministic, needs no model data, costs microseconds
 * per chunk, and a misjudged chunk only loses stemming (the trigram and simple matches remain).
 */
export const CHUNK_LANGUAGES = ['ru', 'en', 'simple'] as const;
export type ChunkLanguage = (typeof CHUNK_LANGUAGES)[number];

/** The Postgres text search configuration of each chunk language. */
export const TEXT_SEARCH_CONFIG: Record<ChunkLanguage, 'russian' | 'english' | 'simple'> = {
  ru: 'russian',
  en: 'english',
  simple: 'simple',
};

const CYRILLIC = /\p{Script=Cyrillic}/u;
const LATIN = /\p{Script=Latin}/u;
// Ukrainian, Belarusian, Serbian, Macedonian letters that Russian does not use.
const NON_RUSSIAN_CYRILLIC = /[іїєґўђјљњћџѓќѕІЇЄҐЎЂЈЉЊЋЏЃЌЅ]/u;
// Latin letters with diacritics: French, German, Spanish, Polish, Czech, Nordic, Turkish…
const NON_ENGLISH_LATIN = /[à-öø-ÿĀ-žȘ-țÀ-ÖØ-Þ]/u;
const ENGLISH_FUNCTION_WORDS = new Set(
  'the a an and or of to in on for with is are was were be been it this that these those by from at as not no we you your our they their he she his her its can will would should have has had do does did what which who how when where if than then there here about all any more most per each'.split(
    ' ',
  ),
);

export function detectLanguage(text: string): ChunkLanguage {
  let cyrillic = 0;
  let latin = 0;
  let nonRussian = 0;
  let nonEnglish = 0;
  for (const ch of text) {
    if (CYRILLIC.test(ch)) {
      cyrillic++;
      if (NON_RUSSIAN_CYRILLIC.test(ch)) nonRussian++;
    } else if (LATIN.test(ch)) {
      latin++;
      if (NON_ENGLISH_LATIN.test(ch)) nonEnglish++;
    }
  }
  if (cyrillic + latin < 3) return 'simple';
  if (cyrillic >= latin) return nonRussian > cyrillic * 0.005 ? 'simple' : 'ru';
  if (nonEnglish > latin * 0.01) return 'simple';
  const words = text.toLowerCase().match(/\p{L}+/gu) ?? [];
  // Short texts (a query, a product name) rarely contain function words: English by default.
  if (words.length < 12) return 'en';
  const functionWords = words.filter((w) => ENGLISH_FUNCTION_WORDS.has(w)).length;
  return functionWords / words.length >= 0.08 ? 'en' : 'simple';
}
