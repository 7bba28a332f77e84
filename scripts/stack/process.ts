import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';

/** Signal to send a child when its parent goes away, and how long to wait before SIGKILL. */
interface OwnedChild {
  child: ChildProcess;
  stopSignal: NodeJS.Signals;
}

const ownedChildren = new Set<OwnedChild>();
const forwardedSignals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let parentHooksInstalled = false;

function signalOwnedChildren(): void {
  for (const { child, stopSignal } of ownedChildren) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, stopSignal);
      } catch {
        // already gone
      }
    }
  }
}

function onParentSignal(signal: NodeJS.Signals): void {
  // Only act when nobody else handles the signal: a dev script or a worker with its own
  // graceful shutdown stops its services itself, and the 'exit' hook still covers the rest.
  if (process.listenerCount(signal) > 1) return;
  signalOwnedChildren();
  for (const s of forwardedSignals) process.removeListener(s, onParentSignal);
  // Re-raise so the parent still dies with the signal's default behaviour (exit code 128+n).
  process.kill(process.pid, signal);
}

function installParentHooks(): void {
  if (parentHooksInstalled) return;
  parentHooksInstalled = true;
  process.on('exit', signalOwnedChildren);
  for (const s of forwardedSignals) process.on(s, onParentSignal);
}

// A parent killed with SIGKILL (a CI timeout, vitest tearing down a fork) runs no hooks at
// all, so a tiny detached shell polls for the parent and stops the child once it is gone.
const watchdogScript = `
parent=$1; child=$2; sig=$3; grace=$4
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1; done
kill -0 "$child" 2>/dev/null || exit 0
kill -s "$sig" "$child" 2>/dev/null
i=0
while [ "$i" -lt "$grace" ] && kill -0 "$child" 2>/dev/null; do sleep 1; i=$((i+1)); done
kill -s KILL "$child" 2>/dev/null
exit 0
`;

/**
 * Makes sure `child` does not outlive this process: stopped on normal exit, on an unhandled
 * SIGINT/SIGTERM/SIGHUP, and by a watchdog when this process is killed outright.
 */
export function bindChildToParent(child: ChildProcess, stopSignal: NodeJS.Signals, graceSeconds: number): void {
  if (child.pid === undefined) return;
  const owned: OwnedChild = { child, stopSignal };
  ownedChildren.add(owned);
  installParentHooks();
  child.once('exit', () => ownedChildren.delete(owned));
  try {
    const watchdog = spawn(
      '/bin/sh',
      ['-c', watchdogScript, 'stack-watchdog', String(process.pid), String(child.pid), stopSignal.replace(/^SIG/, ''), String(graceSeconds)],
      { detached: true, stdio: 'ignore' },
    );
    watchdog.on('error', () => undefined);
    watchdog.unref();
  } catch {
    // Without /bin/sh we still have the exit and signal hooks.
  }
}

export function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

export function isPidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM means it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Resolves true when the child has exited within timeoutMs, false otherwise. */
export async function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (!isRunning(child)) return true;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.removeListener('exit', onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

/** Sends `signal`, waits up to graceMs, then SIGKILLs. Resolves once the child is gone. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (!isRunning(child)) return;
  child.kill(signal);
  if (await waitForExit(child, graceMs)) return;
  child.kill('SIGKILL');
  await waitForExit(child, 5_000);
}

/** Calls onLine for each complete line written to the stream. */
export function forEachLine(stream: Readable | null, onLine: (line: string) => void): void {
  if (!stream) return;
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) if (line.trim() !== '') onLine(line.replace(/\r$/, ''));
  });
  stream.on('end', () => {
    if (pending.trim() !== '') onLine(pending);
    pending = '';
  });
}

/**
 * Keeps the last `capacity` lines, for error messages when a child dies early. Lines that
 * `isNotable` picks (the cause of a crash, say) are kept as well, up to `capacity` of them,
 * since a Go panic's stack trace alone fills the tail and pushes its cause out.
 */
export class RecentLines {
  private readonly lines: string[] = [];
  private readonly notable: string[] = [];
  private pushed = 0;
  constructor(
    private readonly capacity = 40,
    private readonly isNotable: (line: string) => boolean = () => false,
  ) {}
  push(line: string): void {
    this.pushed += 1;
    this.lines.push(line);
    if (this.lines.length > this.capacity) {
      const dropped = this.lines.shift()!;
      if (this.isNotable(dropped) && this.notable.length < this.capacity) this.notable.push(dropped);
    }
  }
  toString(): string {
    if (this.notable.length === 0) return this.lines.join('\n');
    const omitted = this.pushed - this.lines.length - this.notable.length;
    return [...this.notable, `… ${omitted} more lines …`, ...this.lines].join('\n');
  }
}

export function formatElapsed(ms: number): string {
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds}s`;
  return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
}

/**
 * An exclusive lock file holding our pid, so two processes (say `npm run dev` and `npm test`)
 * never build or initialise the same thing at once. A lock whose pid is gone is stale.
 * Resolves to the release function.
 */
export async function acquireFileLock(
  lockFile: string,
  onWait: (holderPid: number | undefined, waitedMs: number) => void = () => undefined,
): Promise<() => Promise<void>> {
  const started = Date.now();
  let lastReport = -Infinity;
  for (;;) {
    try {
      const handle = await fs.open(lockFile, 'wx', 0o644);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return async () => {
        await fs.rm(lockFile, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const content = await fs.readFile(lockFile, 'utf8').catch(() => '');
    const holder = Number.parseInt(content, 10);
    if (Number.isInteger(holder) ? !isPidAlive(holder) : await isOlderThan(lockFile, 5_000)) {
      // Its holder died (or never got to write its pid); take over.
      await fs.rm(lockFile, { force: true });
      continue;
    }
    if (Date.now() - lastReport >= 60_000) {
      lastReport = Date.now();
      onWait(Number.isInteger(holder) ? holder : undefined, Date.now() - started);
    }
    await sleep(500);
  }
}

async function isOlderThan(file: string, ms: number): Promise<boolean> {
  const stat = await fs.stat(file).catch(() => undefined);
  return stat === undefined || Date.now() - stat.mtimeMs > ms;
}
