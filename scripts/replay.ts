/**
 * `npm run replay -- <workflowId> [<workflowId>…]`
 * `npm run replay -- --query 'WorkflowType = "agentRun" AND StartTime > "2026-11-01T00:00:00Z"'`
 * `npm run replay -- --file tests/replay/histories/agentRun/completed.json`
 *
 * Fetches histories from the cluster (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE; TEMPORAL_CODEC_KEYS
 * to decrypt; on the dev stack the keyring `npm run dev` generated is found by itself) and
 * replays them against the workflow code in this checkout. Prints one line per history and, for
 * a divergence, the event where the new code disagreed. Only a divergence is reported as
 * non-determinism; each other failure is reported as what it is, with its own exit code:
 *
 *   0  every history replayed deterministically
 *   1  non-determinism: the current code cannot resume at least one run (guard with patched())
 *   2  usage or configuration error, unknown workflow id, or nothing matched
 *   3  payloads cannot be decoded: TEMPORAL_CODEC_KEYS missing, without the key id, or wrong
 *   4  Temporal unreachable (or it refused our credentials)
 *   5  replay failed for another reason (not a determinism verdict)
 *
 * Use it before deploying workflow changes (against a sample of open runs) and to debug a
 * production run locally: check out the deployed commit, replay, then bisect.
 */
import { readFile } from 'node:fs/promises';
import type { HistoryAndWorkflowId } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { ConfigError, loadTemporalToolConfig } from '../lib/config.js';
import { codecKeyringFrom, createDataConverter } from '../lib/temporal-codec.js';
import { createTemporalClient, describeTemporalConnection, type TemporalClient } from '../lib/temporal.js';
import { describeOutcome, historyFromFile, replayHistories, type ReplayStatus } from '../workers/replay.js';
import { devCodecKeys, devSecretsFile } from './stack/dev-secrets.js';

const EXIT = { ok: 0, nondeterministic: 1, usage: 2, undecodable: 3, unreachable: 4, failed: 5 } as const;

// gRPC status codes of a cluster we cannot use: UNAVAILABLE, DEADLINE_EXCEEDED, UNAUTHENTICATED, PERMISSION_DENIED.
const UNREACHABLE_CODES = new Set([14, 4, 16, 7]);
const NOT_FOUND = 5;

/** Temporal could not be reached or refused us: exit 4 with what to check. */
class UnreachableError extends Error {}

function grpcCode(err: unknown): number | undefined {
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'number') return code;
  }
  return undefined;
}

function isUnreachable(err: unknown): boolean {
  const code = grpcCode(err);
  if (code !== undefined) return UNREACHABLE_CODES.has(code);
  return /transport error|connect|ECONNREFUSED|ENOTFOUND|timed out|deadline/i.test((err as Error).message ?? '');
}

const usage = `usage:
  npm run replay -- <workflowId> [<workflowId>…]     replay the latest run of each workflow id
  npm run replay -- --query '<visibility query>'      replay every workflow the query lists
  npm run replay -- --file <history.json> […]         replay saved histories (no cluster needed)
options: --limit N (with --query, default 100)
env: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_CODEC_KEYS (to decrypt payloads),
     TEMPORAL_TLS*, TEMPORAL_API_KEY (secured clusters, docs/configuration.md)`;

interface Args {
  ids: string[];
  query?: string;
  files: string[];
  limit: number;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { ids: [], files: [], limit: 100 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--query') args.query = argv[++i];
    else if (arg === '--file') args.files.push(argv[++i]!);
    else if (arg === '--limit') args.limit = Number(argv[++i]);
    else if (arg === '--help' || arg === '-h') throw new UsageError('');
    else if (arg.startsWith('--')) throw new UsageError(`unknown option ${arg}`);
    else args.ids.push(arg);
  }
  if (args.query === undefined && args.ids.length === 0 && args.files.length === 0) throw new UsageError('nothing to replay');
  if (!Number.isInteger(args.limit) || args.limit < 1) throw new UsageError('--limit must be a positive integer');
  return args;
}

class UsageError extends Error {}

async function main(): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      if (err.message) console.error(err.message);
      console.error(usage);
      return EXIT.usage;
    }
    throw err;
  }
  // The replay worker's bundling and state changes are noise here; problems still print.
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const config = loadTemporalToolConfig();
  // On the dev stack (`npm run dev` on this checkout) its generated keyring decrypts the
  // histories; never outside development, and never over keys given explicitly.
  let codecKeys = config.TEMPORAL_CODEC_KEYS;
  if (!codecKeys && process.env.APP_ENV !== 'production' && (codecKeys = devCodecKeys())) {
    console.log(`payload keys: the dev stack's (${devSecretsFile()}); set TEMPORAL_CODEC_KEYS for any other cluster`);
  }
  const keyring = codecKeyringFrom({ TEMPORAL_CODEC_KEYS: codecKeys, TEMPORAL_CODEC_ACTIVE_KEY_ID: config.TEMPORAL_CODEC_ACTIVE_KEY_ID });
  const dataConverter = createDataConverter(keyring);
  const histories: HistoryAndWorkflowId[] = [];
  for (const file of args.files) {
    const history = historyFromFile(JSON.parse(await readFile(file, 'utf8')));
    histories.push({ workflowId: history.events?.[0]?.workflowExecutionStartedEventAttributes?.workflowId ?? file, history });
  }

  let source: AsyncIterable<HistoryAndWorkflowId> | Iterable<HistoryAndWorkflowId> = histories;
  let client: TemporalClient | undefined;
  if (args.ids.length > 0 || args.query !== undefined) {
    const where = describeTemporalConnection(config);
    try {
      client = await createTemporalClient(config, { dataConverter });
      await client.workflowService.getSystemInfo({});
    } catch (err) {
      throw new UnreachableError(`cannot reach Temporal at ${where}: ${(err as Error).message}`, { cause: err });
    }
    const connected = client;
    console.log(`replaying against the workflow code in this checkout; histories from ${where}`);
    const query = args.query;
    const limit = args.limit;
    const ids = args.ids;
    source = (async function* () {
      yield* histories;
      for (const workflowId of ids) {
        try {
          yield { workflowId, history: await connected.workflow.getHandle(workflowId).fetchHistory() };
        } catch (err) {
          if (grpcCode(err) === NOT_FOUND || (err as Error).name === 'WorkflowNotFoundError') throw new UsageError(`workflow ${workflowId} not found in namespace ${config.TEMPORAL_NAMESPACE}`);
          throw err;
        }
      }
      if (query !== undefined) {
        let count = 0;
        for await (const item of connected.workflow.list({ query, pageSize: Math.min(limit, 100) }).intoHistories()) {
          yield item;
          if (++count >= limit) break;
        }
      }
    })();
  }

  const counts: Record<ReplayStatus, number> = { deterministic: 0, nondeterministic: 0, undecodable: 0, failed: 0 };
  try {
    for await (const outcome of replayHistories(source, { dataConverter, payloadKeys: { keyring } })) {
      counts[outcome.status]++;
      console.log(describeOutcome(outcome));
    }
  } catch (err) {
    if (err instanceof UsageError) throw err;
    if (client && isUnreachable(err)) throw new UnreachableError(`lost Temporal at ${describeTemporalConnection(config)}: ${(err as Error).message}`, { cause: err });
    throw err;
  } finally {
    await client?.connection.close();
  }
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  if (total === 0) {
    console.log('no history matched');
    return EXIT.usage;
  }
  if (counts.nondeterministic > 0) {
    console.log(`${counts.nondeterministic} of ${total} NON-DETERMINISTIC: the current code cannot resume these runs; guard the change with patched() (docs/operations.md)`);
  }
  if (counts.undecodable > 0) {
    console.log(`${counts.undecodable} of ${total} could not be decoded (not replayed): give TEMPORAL_CODEC_KEYS the keyring that encrypted them; this says nothing about determinism`);
  }
  if (counts.failed > 0) {
    console.log(`${counts.failed} of ${total} failed to replay for a reason other than non-determinism (see above)`);
  }
  if (counts.deterministic === total) console.log(`all ${total} replayed deterministically`);
  // The most serious verdict decides the exit code.
  if (counts.nondeterministic > 0) return EXIT.nondeterministic;
  if (counts.undecodable > 0) return EXIT.undecodable;
  if (counts.failed > 0) return EXIT.failed;
  return EXIT.ok;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError || err instanceof UsageError) {
      console.error(err.message);
      process.exit(EXIT.usage);
    }
    if (err instanceof UnreachableError) {
      console.error(`${err.message}\n(check TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE and the TLS or API key settings)`);
      process.exit(EXIT.unreachable);
    }
    console.error('replay failed (not a determinism verdict):', err);
    process.exit(EXIT.failed);
  },
);
