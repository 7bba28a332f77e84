import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The production entry points (api/main.ts, workers/main.ts, scripts/*.ts) run as child
 * processes with an environment of the test's choosing, the way a deployment starts them.
 */
export const root = fileURLToPath(new URL('../..', import.meta.url));

export interface AppProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

/** `preload`: modules loaded before the entry point (`--import`), e.g. tests/support/crash-trigger.ts. */
export function startAppProcess(entry: string, env: Record<string, string | undefined>, opts: { preload?: string[] } = {}): AppProcess {
  // `node --import tsx` rather than the tsx CLI: no relay process between a signal and the app.
  const preload = (opts.preload ?? []).flatMap((file) => ['--import', path.join(root, file)]);
  const child = spawn(process.execPath, ['--import', 'tsx', ...preload, path.join(root, entry)], {
    cwd: root,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    output: () => output,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Runs a one-shot script (setup, replay) to completion. */
export function runScript(entry: string, args: string[], env: Record<string, string | undefined>, timeoutMs = 120_000): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, entry), ...args], {
    cwd: root,
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

export interface Probe {
  status: number;
  body: { status?: string; checks?: Record<string, string> };
}

export async function probe(url: string): Promise<Probe | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    return { status: res.status, body: (await res.json()) as Probe['body'] };
  } catch {
    return undefined;
  }
}

/** Polls `url` until `until` holds for its answer; fails with the last answer and the process output. */
export async function waitForProbe(url: string, app: AppProcess, until: (p: Probe) => boolean, timeoutMs = 90_000): Promise<Probe> {
  const deadline = Date.now() + timeoutMs;
  let last: Probe | undefined;
  for (;;) {
    if (app.child.exitCode !== null) throw new Error(`process exited (${app.child.exitCode}) while waiting for ${url}:\n${app.output()}`);
    last = await probe(url);
    if (last && until(last)) return last;
    if (Date.now() > deadline) throw new Error(`${url} never matched; last answer ${JSON.stringify(last)}\n--- output ---\n${app.output()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
