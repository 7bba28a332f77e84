/**
 * `npm run replay -- <workflowId> [<workflowId>…]`
 * `npm run replay -- --query 'WorkflowType = "agentRun" AND StartTime > "2026-11-01T00:00:00Z"'`
 * `npm run replay -- --file tests/replay/histories/agentRun/completed.json`
 *
 * Fetches histories from the cluster (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE; TEMPORAL_CODEC_KEYS
 * to decrypt) and replays them against the workflow code in this checkout. Prints one line per
 * history and, for a divergence, the event where the new code disagreed. Exit code 0 when every
 * history replays, 1 when any diverges, 2 on usage or connection errors.
 *
 * Use it before deploying workflow changes (against a sample of open runs) and to debug a
 * production run locally: check out the deployed commit, replay, then bisect.
 */
import { readFile } from 'node:fs/promises';
import type { HistoryAndWorkflowId } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { ConfigError, loadTemporalToolConfig } from '../lib/config.js';
import { codecKeyringFrom, createDataConverter } from '../lib/temporal-codec.js';
import { createTemporalClient, describeTemporalConnection } from '../lib/temporal.js';
import { describeOutcome, historyFromFile, replayHistories } from '../workers/replay.js';

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
      return 2;
    }
    throw err;
  }
  // The replay worker's bundling and state changes are noise here; problems still print.
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const config = loadTemporalToolConfig();
  const dataConverter = createDataConverter(codecKeyringFrom(config));
  const histories: HistoryAndWorkflowId[] = [];
  for (const file of args.files) {
    const history = historyFromFile(JSON.parse(await readFile(file, 'utf8')));
    histories.push({ workflowId: history.events?.[0]?.workflowExecutionStartedEventAttributes?.workflowId ?? file, history });
  }

  let source: AsyncIterable<HistoryAndWorkflowId> | Iterable<HistoryAndWorkflowId> = histories;
  let close = async () => {};
  if (args.ids.length > 0 || args.query !== undefined) {
    const client = await createTemporalClient(config, { dataConverter });
    close = () => client.connection.close();
    console.log(`replaying against the workflow code in this checkout; histories from ${describeTemporalConnection(config)}`);
    const fromIds = args.ids.map(async (workflowId) => ({ workflowId, history: await client.workflow.getHandle(workflowId).fetchHistory() }));
    const query = args.query;
    const limit = args.limit;
    source = (async function* () {
      yield* histories;
      for (const item of fromIds) yield await item;
      if (query !== undefined) {
        let count = 0;
        for await (const item of client.workflow.list({ query, pageSize: Math.min(limit, 100) }).intoHistories()) {
          yield item;
          if (++count >= limit) break;
        }
      }
    })();
  }

  let total = 0;
  let diverged = 0;
  try {
    for await (const outcome of replayHistories(source, { dataConverter })) {
      total++;
      if (!outcome.deterministic) diverged++;
      console.log(describeOutcome(outcome));
    }
  } finally {
    await close();
  }
  console.log(
    total === 0
      ? 'no history matched'
      : diverged === 0
        ? `all ${total} replayed deterministically`
        : `${diverged} of ${total} NON-DETERMINISTIC: the current code cannot resume these runs; guard the change with patched() (docs/operations.md)`,
  );
  return total === 0 ? 2 : diverged === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof ConfigError ? err.message : err);
    process.exit(2);
  },
);
