/**
 * Vitest global setup: builds the console (web/) into web/dist when it is missing or older than
 * its sources, once per test run, before any file that serves it starts. Fresh builds are skipped,
 * so targeted runs that do not touch web/ pay only for a few stat calls.
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

export default function buildConsole(): void {
  if (!consoleIsStale()) return;
  const started = Date.now();
  const result = spawnSync(path.join(root, 'node_modules', '.bin', 'vite'), ['build', '--config', path.join(web, 'vite.config.ts'), '--logLevel', 'warn'], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) throw new Error('building the console (vite build) failed');
  console.log(`[test-stack] console built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}
