/**
 * `npm run check:imports`: the import graph of the product's code, type-only imports included,
 * has no circle and no import that runs up a layer (docs/architecture.md: api and workers →
 * workflows → activities → integrations → lib; the API may use integrations directly but never
 * activities). Also run by tests/unit/imports.test.ts.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const LAYERS = ['lib', 'integrations', 'activities', 'workflows', 'api', 'workers'] as const;
type Layer = (typeof LAYERS)[number];

/** Rank of each layer: a file may import its own layer and lower ranks only. */
const RANK: Record<Layer, number> = { lib: 0, integrations: 1, activities: 2, workflows: 3, api: 4, workers: 4 };
/** Imports the layer order would allow but the architecture forbids. */
const FORBIDDEN: Array<[Layer, Layer]> = [
  ['api', 'activities'],
  ['api', 'workers'],
  ['workers', 'api'],
];

export type ImportGraph = Map<string, Set<string>>;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const full = path.join(dir, entry);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return full.endsWith('.ts') && !full.endsWith('.d.ts') ? [full] : [];
  });
}

function resolveRelative(from: string, specifier: string): string | null {
  const base = path.resolve(path.dirname(from), specifier);
  const candidates = [base.replace(/\.js$/, '.ts'), `${base}.ts`, path.join(base.replace(/\.js$/, ''), 'index.ts')];
  return candidates.find((c) => existsSync(c) && statSync(c).isFile()) ?? null;
}

/** Every file under the layers' folders and the files it imports (static, type-only, dynamic), as paths relative to `root`. */
export function importGraph(root: string): ImportGraph {
  const graph: ImportGraph = new Map();
  for (const layer of LAYERS) {
    const dir = path.join(root, layer);
    if (!existsSync(dir)) continue;
    for (const file of sourceFiles(dir)) {
      const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
      const targets = new Set<string>();
      for (const { fileName } of info.importedFiles) {
        if (!fileName.startsWith('.')) continue;
        const target = resolveRelative(file, fileName);
        if (target) targets.add(path.relative(root, target));
      }
      graph.set(path.relative(root, file), targets);
    }
  }
  return graph;
}

/** Each import circle once, as the files along it. */
export function findCycles(graph: ImportGraph): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, 'open');
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of [...graph.keys()].sort()) if (!state.has(file)) visit(file);
  return cycles;
}

const layerOf = (file: string): Layer | null => (LAYERS as readonly string[]).includes(file.split(path.sep)[0]!) ? (file.split(path.sep)[0] as Layer) : null;

/** Imports that run up a layer, leave the product's code (into tests/, scripts/), or cross a forbidden edge. */
export function layerViolations(graph: ImportGraph): string[] {
  const out: string[] = [];
  for (const [file, targets] of graph) {
    const from = layerOf(file)!;
    for (const target of targets) {
      const to = layerOf(target);
      if (to === null) out.push(`${file} imports ${target}, outside the product's layers`);
      else if (RANK[to] > RANK[from] || FORBIDDEN.some(([a, b]) => a === from && b === to)) out.push(`${file} (${from}) imports ${target} (${to})`);
    }
  }
  return out.sort();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const graph = importGraph(root);
  const cycles = findCycles(graph);
  const violations = layerViolations(graph);
  for (const cycle of cycles) console.log(`circle: ${cycle.join(' → ')}`);
  for (const v of violations) console.log(`layer: ${v}`);
  console.log(`${graph.size} files: ${cycles.length} import circles, ${violations.length} layer violations`);
  process.exit(cycles.length + violations.length === 0 ? 0 : 1);
}
