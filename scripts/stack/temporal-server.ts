import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes.js';
import { freePort, isPortFree } from './ports.js';
import { bindChildToParent, forEachLine, isRunning, RecentLines, stopChild } from './process.js';

export type SearchAttributeKind = 'Keyword' | 'Text' | 'Int' | 'Double' | 'Bool' | 'Datetime' | 'KeywordList';

export interface TemporalDevServer {
  /** host:port of the frontend gRPC service. */
  address: string;
  namespace: string;
  uiUrl?: string;
  stop(): Promise<void>;
}

export interface TemporalDevServerOptions {
  cliPath: string;
  /** Defaults to 127.0.0.1. */
  ip?: string;
  /** A free port when 0 or omitted. */
  port?: number;
  ui?: boolean;
  /** A free port when omitted (the CLI's own default, port+1000, may be taken). */
  uiPort?: number;
  /** Persist state in this SQLite file (dev); in-memory when omitted (tests). */
  dbFilename?: string;
  /** Defaults to `default`. */
  namespace?: string;
  searchAttributes: Record<string, SearchAttributeKind>;
  /** Server log level; defaults to warn. */
  logLevel?: 'debug' | 'info' | 'warn' | 'error' | 'never';
  /** Every line the server prints (JSON log lines and the CLI's banner). */
  onLog?: (line: string) => void;
  extraArgs?: string[];
  /** Readiness deadline; defaults to 60 s. */
  startTimeoutMs?: number;
}

// The CLI and the server it embeds already default these to true (server 1.29); passing them
// keeps Updates and Worker Versioning on if an older fallback CLI (v1.3.0) is in use.
// The version check is off because these machines have no internet to check against.
const DYNAMIC_CONFIG: Record<string, string> = {
  'frontend.enableServerVersionCheck': 'false',
  'frontend.enableUpdateWorkflowExecution': 'true',
  'frontend.enableUpdateWorkflowExecutionAsyncAccepted': 'true',
  'frontend.workerVersioningWorkflowAPIs': 'true',
  'frontend.enableExecuteMultiOperation': 'true',
};

const KIND_TO_ENCODING = {
  Keyword: 'KEYWORD',
  Text: 'TEXT',
  Int: 'INT',
  Double: 'DOUBLE',
  Bool: 'BOOL',
  Datetime: 'DATETIME',
  KeywordList: 'KEYWORD_LIST',
} as const;

const STOP_GRACE_MS = 10_000;
const PORT_IN_USE = /can't (set|use default) .*port|address already in use/i;
// The dev server's logger turns Fatal into an error line and carries on, so a failed listener
// shows up as an error line followed by a nil-pointer panic and a long stack trace.
const isCrashCause = (line: string): boolean => /"level":"(error|fatal)"|level=(ERROR|FATAL)|^panic:|^fatal error:|^Error:/i.test(line);

/**
 * Starts `temporal server start-dev` and resolves once it answers gRPC calls for the namespace
 * and every requested search attribute is registered.
 */
export async function startTemporalDevServer(opts: TemporalDevServerOptions): Promise<TemporalDevServer> {
  // Ports we pick ourselves can be taken between probing and binding; then we pick again.
  const attempts = portsWereOurs(opts) ? 3 : 1;
  let lastError: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      return await startOnce(opts);
    } catch (error) {
      lastError = error;
      if (!(error instanceof RetryableStartError)) throw error;
    }
  }
  throw lastError;
}

/**
 * A start that may succeed on fresh ports: a port taken between probing and binding, or the
 * server dying during start-up (a failed internal listener ends in a panic whose cause is not
 * always in the output we keep; CI saw exactly that once).
 */
class RetryableStartError extends Error {}

async function startOnce(opts: TemporalDevServerOptions): Promise<TemporalDevServer> {
  const ip = opts.ip ?? '127.0.0.1';
  const port = opts.port || (await freePort(ip));
  const namespace = opts.namespace ?? 'default';
  const uiPort = opts.ui ? (opts.uiPort ?? (await freePort(ip))) : undefined;
  const hostForUrl = ip.includes(':') ? `[${ip}]` : ip;
  const address = `${hostForUrl}:${port}`;

  const args = ['server', 'start-dev', '--ip', ip, '--port', String(port)];
  // `default` always exists; --namespace adds namespaces next to it.
  if (namespace !== 'default') args.push('--namespace', namespace);
  if (uiPort !== undefined) args.push('--ui-port', String(uiPort));
  else args.push('--headless');
  if (opts.dbFilename) {
    const dbFilename = path.resolve(opts.dbFilename);
    await fs.mkdir(path.dirname(dbFilename), { recursive: true });
    args.push('--db-filename', dbFilename);
  }
  for (const [name, kind] of Object.entries(opts.searchAttributes)) {
    args.push('--search-attribute', `${name}=${kind}`);
  }
  args.push('--log-format', 'json', '--log-level', opts.logLevel ?? 'warn');
  for (const [key, value] of Object.entries(DYNAMIC_CONFIG)) {
    args.push('--dynamic-config-value', `${key}=${value}`);
  }
  args.push(...(opts.extraArgs ?? []));

  const recent = new RecentLines(40, isCrashCause);
  const child = spawn(opts.cliPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  bindChildToParent(child, 'SIGTERM', STOP_GRACE_MS / 1000);
  const onLine = (line: string): void => {
    recent.push(line);
    opts.onLog?.(line);
  };
  forEachLine(child.stdout, onLine);
  forEachLine(child.stderr, onLine);

  const exited = new Promise<string>((resolve) => {
    child.once('error', (error) => resolve(`could not run ${opts.cliPath}: ${error.message}`));
    child.once('exit', (code, signal) => resolve(`exited with ${signal ?? `code ${code}`}`));
  });

  const stop = async (): Promise<void> => {
    await stopChild(child, 'SIGTERM', STOP_GRACE_MS);
  };

  try {
    await waitUntilReady({
      child,
      exited,
      address,
      namespace,
      searchAttributes: opts.searchAttributes,
      timeoutMs: opts.startTimeoutMs ?? 60_000,
    });
  } catch (error) {
    await stop();
    const logs = recent.toString();
    const message = `Temporal dev server on ${address} failed to start: ${(error as Error).message}\n--- last server output ---\n${logs}`;
    if (portsWereOurs(opts) && (PORT_IN_USE.test(logs) || error instanceof ServerExitedError)) throw new RetryableStartError(message);
    throw new Error(message);
  }

  const server: TemporalDevServer = { address, namespace, stop };
  if (uiPort !== undefined) server.uiUrl = `http://${hostForUrl}:${uiPort}`;
  return server;
}

function portsWereOurs(opts: TemporalDevServerOptions): boolean {
  return !opts.port || (opts.ui === true && opts.uiPort === undefined);
}

async function waitUntilReady(params: {
  child: ChildProcess;
  exited: Promise<string>;
  address: string;
  namespace: string;
  searchAttributes: Record<string, SearchAttributeKind>;
  timeoutMs: number;
}): Promise<void> {
  const deadline = Date.now() + params.timeoutMs;
  let earlyExit: string | undefined;
  void params.exited.then((reason) => {
    earlyExit = reason;
  });
  let lastProblem = 'no answer yet';
  while (Date.now() < deadline) {
    if (earlyExit !== undefined || !isRunning(params.child)) {
      throw new ServerExitedError(`the server process ${earlyExit ?? 'exited'}`);
    }
    let connection: Connection | undefined;
    try {
      connection = await Connection.connect({ address: params.address, connectTimeout: 2_000 });
      await connection.workflowService.getSystemInfo({});
      await connection.workflowService.describeNamespace({ namespace: params.namespace });
      await registerSearchAttributes(connection, params.namespace, params.searchAttributes);
      return;
    } catch (error) {
      if (error instanceof SearchAttributeConflictError) throw error;
      lastProblem = (error as Error).message;
    } finally {
      await connection?.close().catch(() => undefined);
    }
    await sleep(250);
  }
  throw new Error(`not ready after ${Math.round(params.timeoutMs / 1000)} s (last error: ${lastProblem})`);
}

class SearchAttributeConflictError extends Error {}
class ServerExitedError extends Error {}

function kindOf(indexedValueType: number): string {
  const kinds = Object.keys(KIND_TO_ENCODING) as SearchAttributeKind[];
  return kinds.find((kind) => encodeSearchAttributeIndexedValueType(KIND_TO_ENCODING[kind]) === indexedValueType) ?? `type ${indexedValueType}`;
}

/**
 * start-dev only registers --search-attribute values when it creates a namespace, so with a
 * --db-filename from an earlier run new attributes must be added through the operator API.
 */
export async function registerSearchAttributes(
  connection: Connection,
  namespace: string,
  wanted: Record<string, SearchAttributeKind>,
): Promise<string[]> {
  const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
  const missing: Record<string, number> = {};
  for (const [name, kind] of Object.entries(wanted)) {
    const expected = encodeSearchAttributeIndexedValueType(KIND_TO_ENCODING[kind]);
    if (expected === undefined) throw new SearchAttributeConflictError(`unknown search attribute type ${kind}`);
    const existing = customAttributes?.[name];
    if (existing === undefined || existing === null) {
      missing[name] = expected;
    } else if (existing !== expected) {
      throw new SearchAttributeConflictError(
        `search attribute ${name} is already registered as ${kindOf(existing)}, not ${kind}; ` +
          'delete the dev server database file or rename the attribute',
      );
    }
  }
  if (Object.keys(missing).length === 0) return [];
  await connection.operatorService.addSearchAttributes({ namespace, searchAttributes: missing });
  // The dev server turns on forceSearchAttributesCacheRefreshOnRead, so they are usable at once;
  // confirm anyway so a caller never races a query against registration.
  for (let i = 0; i < 20; i++) {
    const after = await connection.operatorService.listSearchAttributes({ namespace });
    if (Object.keys(missing).every((name) => after.customAttributes?.[name] !== undefined)) return Object.keys(missing);
    await sleep(100);
  }
  throw new Error(`search attributes ${Object.keys(missing).join(', ')} did not appear after registration`);
}

/** True when nothing holds the dev server's gRPC port any more. */
export async function isTemporalPortFree(server: Pick<TemporalDevServer, 'address'>): Promise<boolean> {
  const separator = server.address.lastIndexOf(':');
  const host = server.address.slice(0, separator).replace(/^\[|\]$/g, '');
  return isPortFree(host, Number(server.address.slice(separator + 1)));
}
