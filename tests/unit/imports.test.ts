import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { findCycles, importGraph, layerViolations } from '../../scripts/check-imports.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** A throwaway tree of `files` (path → source) laid out like the repository. */
function tree(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'imports-'));
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), text);
  }
  return dir;
}

describe('the import graph of api, workers, workflows, activities, integrations and lib', () => {
  const graph = importGraph(root);

  it('has no import circle, type-only imports included', () => {
    expect(graph.size).toBeGreaterThan(80);
    expect(findCycles(graph)).toEqual([]);
  });

  it('imports only downward: api and workers → workflows → activities → integrations → lib, never api → activities', () => {
    expect(layerViolations(graph)).toEqual([]);
  });

  it('finds a circle made of type-only imports, an upward import and an import into tests/', () => {
    const dir = tree({
      'integrations/a.ts': `import type { B } from './b.js';\nexport type A = B;\n`,
      'integrations/b.ts': `import type { A } from './a.js';\nexport type B = { a?: A };\n`,
      'lib/c.ts': `import { x } from '../activities/x/index.js';\nimport { fake } from '../tests/fake.js';\nexport const c = [x, fake];\n`,
      'activities/x/index.ts': `export const x = 1;\n`,
      'tests/fake.ts': `export const fake = 1;\n`,
    });
    const fixture = importGraph(dir);
    expect(findCycles(fixture)).toEqual([['integrations/a.ts', 'integrations/b.ts', 'integrations/a.ts']]);
    expect(layerViolations(fixture)).toEqual(['lib/c.ts (lib) imports activities/x/index.ts (activities)', "lib/c.ts imports tests/fake.ts, outside the product's layers"]);
  });
});
