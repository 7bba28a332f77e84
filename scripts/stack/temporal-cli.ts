import { spawn, spawnSync } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { acquireFileLock, formatElapsed, RecentLines } from './process.js';

// v1.5.1 is the newest tag `go install pkg@version` accepts: from v1.6.0 on, go.mod carries a
// `replace` directive, which `go install ...@version` rejects. The older tags are fallbacks for
// a Go toolchain that cannot build v1.5.1.
const CLI_VERSIONS = ['1.5.1', '1.4.1', '1.3.0'] as const;
const CLI_MODULE = 'github.com/temporalio/cli';

type Log = (msg: string) => void;

/** Where the project keeps the Temporal CLI and Go's caches: outside the repository. */
export function projectCacheDir(): string {
  const explicit = process.env.GPT_AGENT_PLATFORM_CACHE;
  if (explicit) return path.resolve(explicit);
  const xdg = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(xdg, 'gpt-agent-platform');
}

function goDirs(): { bin: string; cache: string; mod: string; lock: string } {
  const goRoot = path.join(projectCacheDir(), 'go');
  return {
    bin: path.join(goRoot, 'bin'),
    cache: path.join(goRoot, 'cache'),
    mod: path.join(goRoot, 'mod'),
    lock: path.join(goRoot, 'build.lock'),
  };
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    const stat = await fs.stat(file);
    if (!stat.isFile()) return false;
    await fs.access(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function findOnPath(name: string, extraDirs: string[] = []): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), ...extraDirs];
  for (const dir of dirs) {
    const candidate = path.resolve(dir, name);
    if (await isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function cliWorks(binary: string): boolean {
  const result = spawnSync(binary, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  return result.status === 0 && /temporal/i.test(`${result.stdout}${result.stderr}`);
}

/**
 * Absolute path of a working `temporal` binary: TEMPORAL_CLI_PATH, then PATH, then the project
 * cache, else built once from the Go module proxy into the cache.
 */
export async function ensureTemporalCli(log: Log = (msg) => console.error(msg)): Promise<string> {
  const explicit = process.env.TEMPORAL_CLI_PATH;
  if (explicit) {
    const resolved = path.resolve(explicit);
    if (!(await isExecutable(resolved))) {
      throw new Error(`TEMPORAL_CLI_PATH=${explicit} is not an executable file; fix the path or unset it`);
    }
    return resolved;
  }

  const onPath = await findOnPath('temporal');
  if (onPath && cliWorks(onPath)) return onPath;

  const dirs = goDirs();
  const cached = path.join(dirs.bin, 'temporal');
  if ((await isExecutable(cached)) && cliWorks(cached)) return cached;

  const go = await findOnPath('go', ['/usr/local/go/bin']);
  if (!go) {
    throw new Error(
      'The Temporal CLI was not found (TEMPORAL_CLI_PATH, PATH, ' +
        `${cached}) and Go is not installed to build it. Install Go >= 1.25, or the Temporal CLI, ` +
        'or set TEMPORAL_ADDRESS to use a running Temporal server.',
    );
  }

  await fs.mkdir(path.dirname(dirs.lock), { recursive: true });
  const releaseLock = await acquireFileLock(dirs.lock, (holder, waited) =>
    log(`temporal-cli: another process (pid ${holder ?? '?'}) is building the Temporal CLI; waiting (${formatElapsed(waited)})`),
  );
  try {
    // Whoever held the lock before us may have built it.
    if ((await isExecutable(cached)) && cliWorks(cached)) return cached;
    await waitForForeignGoInstall(cached, log);
    if ((await isExecutable(cached)) && cliWorks(cached)) return cached;
    await buildCli(go, dirs, log);
    if (!((await isExecutable(cached)) && cliWorks(cached))) {
      throw new Error(`go install reported success but ${cached} does not run`);
    }
    return cached;
  } finally {
    await releaseLock();
  }
}

/**
 * A `go install` of the CLI into the same GOBIN started outside this tooling (by hand, by an
 * older checkout): building next to it would only double the time both take.
 */
async function foreignGoInstallPids(gobin: string): Promise<number[]> {
  const entries = await fs.readdir('/proc').catch(() => [] as string[]);
  const pids: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await fs.readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const args = cmdline.split('\0');
    if (path.basename(args[0] ?? '') !== 'go' || !args.includes('install')) continue;
    if (!args.some((a) => a.startsWith(`${CLI_MODULE}/cmd/temporal@`))) continue;
    const environ = await fs.readFile(`/proc/${entry}/environ`, 'utf8').catch(() => undefined);
    // Unreadable environment: assume the same target rather than race it.
    if (environ === undefined || environ.split('\0').includes(`GOBIN=${gobin}`)) pids.push(Number(entry));
  }
  return pids;
}

async function waitForForeignGoInstall(cached: string, log: Log): Promise<void> {
  const gobin = path.dirname(cached);
  const started = Date.now();
  let lastReport = -Infinity;
  for (;;) {
    const pids = await foreignGoInstallPids(gobin);
    if (pids.length === 0) return;
    if (Date.now() - lastReport > 60_000) {
      lastReport = Date.now();
      log(`temporal-cli: a go install of the Temporal CLI is already running (pid ${pids.join(', ')}); waiting for ${cached} (${formatElapsed(Date.now() - started)})`);
    }
    await sleep(2_000);
  }
}

async function buildCli(go: string, dirs: ReturnType<typeof goDirs>, log: Log): Promise<void> {
  const started = Date.now();
  log(`temporal-cli: building the Temporal CLI once with ${go}, this takes a few minutes (into ${dirs.bin})`);
  const failures: string[] = [];
  for (const version of CLI_VERSIONS) {
    const attemptStarted = Date.now();
    log(`temporal-cli: go install ${CLI_MODULE}/cmd/temporal@v${version}`);
    const result = await runGoInstall(go, dirs, version, (elapsed) =>
      log(`temporal-cli: still building v${version} (${formatElapsed(elapsed)} elapsed)`),
    );
    if (result.ok) {
      log(`temporal-cli: built v${version} in ${formatElapsed(Date.now() - attemptStarted)} (total ${formatElapsed(Date.now() - started)})`);
      if (version !== CLI_VERSIONS[0]) {
        log(`temporal-cli: NOTE v${CLI_VERSIONS[0]} failed with this Go toolchain; using fallback v${version}`);
      }
      return;
    }
    log(`temporal-cli: v${version} failed after ${formatElapsed(Date.now() - attemptStarted)}:\n${result.output}`);
    failures.push(`v${version}: ${result.output.split('\n').slice(-5).join(' | ')}`);
  }
  throw new Error(`could not build the Temporal CLI with ${go}:\n${failures.join('\n')}`);
}

function runGoInstall(
  go: string,
  dirs: ReturnType<typeof goDirs>,
  version: string,
  onProgress: (elapsedMs: number) => void,
): Promise<{ ok: boolean; output: string }> {
  const started = Date.now();
  const child = spawn(
    go,
    [
      'install',
      '-trimpath',
      '-ldflags',
      `-s -w -X ${CLI_MODULE}/temporalcli.Version=${version}`,
      `${CLI_MODULE}/cmd/temporal@v${version}`,
    ],
    {
      env: {
        ...process.env,
        CGO_ENABLED: '0',
        GOBIN: dirs.bin,
        GOCACHE: dirs.cache,
        GOMODCACHE: dirs.mod,
        // Without it the module cache is read-only and `rm -rf` of the cache folder fails.
        GOFLAGS: '-modcacherw',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const output = new RecentLines(30);
  const collect = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) output.push(line);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const progress = setInterval(() => onProgress(Date.now() - started), 60_000);
  return new Promise((resolve) => {
    child.on('error', (error) => {
      clearInterval(progress);
      resolve({ ok: false, output: String(error) });
    });
    child.on('close', (code) => {
      clearInterval(progress);
      resolve({ ok: code === 0, output: output.toString() });
    });
  });
}
