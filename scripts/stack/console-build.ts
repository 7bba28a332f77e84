/**
 * Builds the console (web/) into web/dist when it is missing or older than its sources. `npm run
 * dev` calls it before the API starts (the API reads the built files once, at start-up), and it is
 * the suite's Vitest global setup, so it runs once per test run before any file that serves the
 * console. Fresh builds are skipped: a run that does not touch web/ pays only for a few stat calls.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const web = path.join(root, 'web');

function newestMtime(entry: string): number {
  const stat = statSync(entry);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return Math.max(0, ...readdirSync(entry).map((name) => newestMtime(path.join(entry, name))));
}

export function consoleIsStale(): boolean {
  const built = path.join(web, 'dist', 'index.html');
  if (!existsSync(built)) return true;
  const sources = Math.max(newestMtime(path.join(web, 'src')), newestMtime(path.join(web, 'index.html')), newestMtime(path.join(web, 'vite.config.ts')), newestMtime(path.join(root, 'package-lock.json')));
  return sources > statSync(built).mtimeMs;
}

export function buildConsole(log: (message: string) => void): void {
  if (!consoleIsStale()) return;
  const started = Date.now();
  const result = spawnSync(path.join(root, 'node_modules', '.bin', 'vite'), ['build', '--config', path.join(web, 'vite.config.ts'), '--logLevel', 'warn'], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) throw new Error('building the console (vite build) failed');
  log(`console built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

/** The suite's Vitest global setup (Vitest passes its own argument, so this takes none). */
export default function setup(): void {
  buildConsole((message) => console.log(`[test-stack] ${message}`));
}
