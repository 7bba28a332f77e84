import { describe, expect, it } from 'vitest';
import { loadDocuments, loadQuestions, QUESTION_KINDS } from '../../bench/knowledge/dataset.js';
import { fillerDocument } from '../../bench/knowledge/filler.js';
import { detectLanguage } from '../../activities/knowledge/language.js';

describe('the knowledge evaluation set (bench/knowledge)', () => {
  const documents = loadDocuments();
  const questions = loadQuestions();

  it('has at least 30 documents and 100 questions, in Russian and English', () => {
    expect(documents.length).toBeGreaterThanOrEqual(30);
    expect(questions.length).toBeGreaterThanOrEqual(100);
    const languages = new Set(documents.map((d) => detectLanguage(d.body)));
    expect([...languages].sort()).toEqual(['en', 'ru']);
    expect(new Set(questions.map((q) => q.lang))).toEqual(new Set(['ru', 'en']));
  });

  it('covers every kind of question, each in both languages', () => {
    for (const kind of QUESTION_KINDS) {
      expect(new Set(questions.filter((q) => q.kind === kind).map((q) => q.lang)), kind).toEqual(new Set(['ru', 'en']));
    }
  });

  it('names an existing document for every question, and unique ids', () => {
    const ids = new Set(documents.map((d) => d.id));
    for (const q of questions) expect(ids.has(q.expected), `${q.id} expects ${q.expected}`).toBe(true);
    expect(new Set(questions.map((q) => q.id)).size).toBe(questions.length);
    expect(new Set(documents.map((d) => d.title)).size).toBe(documents.length);
  });

  it('generates the same filler text for the same seed, in both languages', () => {
    expect(fillerDocument(7, 2000)).toEqual(fillerDocument(7, 2000));
    expect(fillerDocument(7, 2000).body).not.toEqual(fillerDocument(8, 2000).body);
    expect(detectLanguage(fillerDocument(2, 3000).body)).toBe('ru');
    expect(detectLanguage(fillerDocument(3, 3000).body)).toBe('en');
    expect(fillerDocument(3, 3000).body.length).toBeGreaterThanOrEqual(3000);
  });
});
