/**
 * The knowledge evaluation set (issue 15, item 3): documents of a fictional company, Tessera
 * (price lists, terms, product sheets, FAQs), in Russian and English, and questions a lead would
 * ask, each with the one document that answers it. Written for this project; every file is ours.
 *
 *   documents/<id>.md   first line `# Title`, the rest the body
 *   questions.tsv       id, kind, lang, expected document id, question (tab-separated, '#' comments)
 *
 * A question's kind says what it tests: `morphology` (another word form than the document's),
 * `synonym` (other words for the same thing), `typo`, `code` (a product code written another way
 * or asked in the other language), `plain` (a paraphrase).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const QUESTION_KINDS = ['morphology', 'synonym', 'typo', 'code', 'plain'] as const;
export type QuestionKind = (typeof QUESTION_KINDS)[number];

export interface EvalDocument {
  id: string;
  title: string;
  body: string;
}

export interface EvalQuestion {
  id: string;
  kind: QuestionKind;
  lang: 'ru' | 'en';
  expected: string;
  question: string;
}

const root = import.meta.dirname;

export function loadDocuments(dir = path.join(root, 'documents')): EvalDocument[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((file) => {
      const text = readFileSync(path.join(dir, file), 'utf8');
      const [first = '', ...rest] = text.split('\n');
      if (!first.startsWith('# ')) throw new Error(`${file}: the first line must be '# Title'`);
      return { id: file.slice(0, -3), title: first.slice(2).trim(), body: rest.join('\n').trim() };
    });
}

export function loadQuestions(file = path.join(root, 'questions.tsv')): EvalQuestion[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() && !line.startsWith('#'))
    .map((line, i) => {
      const [id, kind, lang, expected, question] = line.split('\t');
      if (!id || !expected || !question || !(QUESTION_KINDS as readonly string[]).includes(kind ?? '') || (lang !== 'ru' && lang !== 'en')) {
        throw new Error(`questions.tsv line ${i + 1} is not 'id<TAB>kind<TAB>lang<TAB>expected<TAB>question': ${line}`);
      }
      return { id, kind: kind as QuestionKind, lang, expected, question: question.trim() };
    });
}
