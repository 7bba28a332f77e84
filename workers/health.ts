/**
 * The worker's readiness, served on its metrics port (lib/metrics.ts): ready only once every
 * worker polls its task queue, and only while Temporal and Postgres answer. A worker that cannot
 * connect at all (a refused certificate, a wrong address) says why in the `temporal` check.
 */
import type { NativeConnection, Worker } from '@temporalio/worker';
import type pg from 'pg';
import type { Readiness } from '../lib/metrics.js';

const CHECK_TIMEOUT_MS = 2_000;

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms).unref()),
  ]);
}

function reason(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').slice(0, 500);
}

export class WorkerHealth {
  private connection: NativeConnection | undefined;
  private connectProblem = 'connecting';
  private workers: Worker[] = [];
  /** Set per worker the first time it has a poll outstanding: from then on it has reached the server. */
  private readonly polled = new WeakSet<Worker>();

  constructor(private readonly pool: pg.Pool) {}

  connectFailed(err: unknown, diagnosis: string): void {
    this.connectProblem = `cannot connect: ${reason(err)}; ${diagnosis}`;
  }

  connected(connection: NativeConnection): void {
    this.connection = connection;
  }

  running(workers: Worker[]): void {
    this.workers = workers;
  }

  private pollingCheck(): string {
    if (this.workers.length === 0) return 'not started';
    for (const worker of this.workers) {
      const status = worker.getStatus();
      if (status.runState !== 'RUNNING') return `${worker.options.taskQueue}: ${status.runState.toLowerCase()}`;
      if (status.workflowPollerState !== 'POLLING' || status.activityPollerState !== 'POLLING') {
        return `${worker.options.taskQueue}: pollers ${status.workflowPollerState.toLowerCase()}/${status.activityPollerState.toLowerCase()}`;
      }
      if (status.hasOutstandingWorkflowPoll || status.hasOutstandingActivityPoll) this.polled.add(worker);
      if (!this.polled.has(worker)) return `${worker.options.taskQueue}: no poll yet`;
    }
    return 'ok';
  }

  async readiness(): Promise<Readiness> {
    const connection = this.connection;
    const [postgres, temporal] = await Promise.all([
      withTimeout(this.pool.query('select 1'), CHECK_TIMEOUT_MS).then(
        () => 'ok',
        (err: unknown) => `unreachable: ${reason(err)}`,
      ),
      connection
        ? withTimeout(connection.workflowService.getSystemInfo({}), CHECK_TIMEOUT_MS).then(
            () => 'ok',
            (err: unknown) => `unreachable: ${reason(err)}`,
          )
        : Promise.resolve(this.connectProblem),
    ]);
    const polling = this.pollingCheck();
    const checks = { postgres, temporal, polling };
    return { ready: Object.values(checks).every((c) => c === 'ok'), checks };
  }
}
