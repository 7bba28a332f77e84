// Runs inside a worker thread with a heap cap (integrations/documents/extract.ts): parsing
// untrusted PDF and DOCX files is where memory blows up or code hangs, so it happens where the
// parent can cap and kill it without losing the process. Plain JavaScript: a worker thread does
// not inherit the TypeScript loader.
import { parentPort, workerData } from 'node:worker_threads';

/** @param {Uint8Array} bytes */
async function pdfText(bytes) {
  const { getDocumentProxy, extractText } = await import('unpdf');
  const pdf = await getDocumentProxy(bytes, { isEvalSupported: false, disableFontFace: true, stopAtErrors: false });
  try {
    const { totalPages, text } = await extractText(pdf, { mergePages: false });
    return { text: text.join('\n\n'), pages: totalPages };
  } finally {
    await pdf.cleanup?.();
  }
}

/** @param {Uint8Array} bytes */
async function docxText(bytes) {
  const mammoth = (await import('mammoth')).default;
  const result = await mammoth.extractRawText({ buffer: Buffer.from(bytes) });
  return { text: result.value, pages: null };
}

/** @param {string} html */
async function htmlText(html) {
  const { convert } = await import('html-to-text');
  const text = convert(html, {
    wordwrap: false,
    selectors: [
      { selector: 'a', options: { ignoreHref: true } },
      { selector: 'img', format: 'skip' },
      { selector: 'nav', format: 'skip' },
      { selector: 'footer', format: 'skip' },
      { selector: 'script', format: 'skip' },
      { selector: 'style', format: 'skip' },
      { selector: 'h1', options: { uppercase: false } },
      { selector: 'h2', options: { uppercase: false } },
      { selector: 'h3', options: { uppercase: false } },
      { selector: 'table', format: 'dataTable', options: { uppercaseHeaderCells: false } },
    ],
  });
  return { text, pages: null };
}

/** A failure the document's owner can act on, with a stable code. */
function classify(error) {
  const name = error?.name ?? '';
  const message = String(error?.message ?? error);
  if (name === 'PasswordException' || /password/i.test(message)) return { code: 'encrypted', message: 'The PDF is encrypted; upload it without a password.' };
  if (name === 'InvalidPDFException' || /Invalid PDF|PDF header/i.test(message)) return { code: 'corrupt', message: `The PDF could not be read: ${message}` };
  if (/zip|end of central directory|corrupt/i.test(message)) return { code: 'corrupt', message: `The file could not be read: ${message}` };
  return { code: 'corrupt', message: `The file could not be read: ${message}` };
}

const { bytes, mediaType } = workerData;
try {
  let result;
  if (mediaType === 'application/pdf') result = await pdfText(bytes);
  else if (mediaType === 'application/vnd.openxmlformats-officedocument.wordprocessingml.document') result = await docxText(bytes);
  else if (mediaType === 'text/html') result = await htmlText(new TextDecoder('utf-8').decode(bytes));
  else result = { text: new TextDecoder('utf-8').decode(bytes), pages: null };
  parentPort.postMessage({ ok: true, ...result });
} catch (error) {
  parentPort.postMessage({ ok: false, ...classify(error) });
}
