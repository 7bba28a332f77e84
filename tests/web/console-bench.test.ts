/**
 * `npm run bench:console` in its quickest form (one round, a short answer), so the benchmark
 * cannot rot: it must start the dev stack, drive Chromium and produce every figure. The figures'
 * values are the benchmark's to print, never this test's to judge.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Figure } from '../../bench/support/figures.js';
import { chromiumMissing } from '../support/console-browser.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

describe('npm run bench:console', () => {
  if (chromiumMissing()) return;

  it('measures initial JavaScript, the first screen and live-token delay, one number each', async () => {
    const scratch = mkdtempSync(path.join(os.tmpdir(), 'console-bench-test-'));
    const figuresFile = path.join(scratch, 'figures.jsonl');
    try {
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'bench', 'console.ts')], {
        cwd: root,
        env: { ...process.env, BENCH_ROUNDS: '1', BENCH_CONSOLE_WORDS: '8', BENCH_FIGURES_FILE: figuresFile },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (c: Buffer) => (output += c.toString()));
      child.stderr.on('data', (c: Buffer) => (output += c.toString()));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      expect(code, output.slice(-4000)).toBe(0);

      const figures = readFileSync(figuresFile, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Figure);
      expect(figures.map((f) => f.id).sort()).toEqual(
        ['first-member', 'first-member-no-org', 'first-member-wall', 'first-visitor', 'first-visitor-wall', 'initial-css', 'initial-js', 'initial-js-raw', 'token-max', 'token-p50', 'token-p95', 'token-painted-p95'].sort(),
      );
      for (const figure of figures) {
        expect(figure.samples, figure.id).toHaveLength(1);
        expect(Number.isFinite(figure.samples[0]), `${figure.id}: ${figure.samples[0]}`).toBe(true);
      }
      // Each budget is printed with its goal, as `npm run bench` reports them.
      expect(output).toMatch(/initial JavaScript, gzipped as served .*\| <= 200 /);
      expect(output).toMatch(/live token shown after the raw stream, max .*\| <= 100 /);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  }, 420_000);
});
