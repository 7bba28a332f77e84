/**
 * A replay scenario drives one path of one workflow type against the test stack (real Temporal,
 * real Postgres, fake LLM/CRMs) so `npm run replay:record` can save its history as a fixture.
 * Add a module to tests/replay/scenarios/ exporting `scenarios` (and `startWorkers` for the task
 * queues it needs); the recorder and the replay test pick it up without further wiring.
 */
import type { Worker } from '@temporalio/worker';
import type pg from 'pg';
import type { FakeLlmServer } from '../../scripts/stack/sandbox-llm.js';
import type { TestTemporal } from '../support/temporal.js';

export interface ScenarioContext {
  temporal: TestTemporal;
  /** Superuser pool for fixtures. */
  admin: pg.Pool;
  /** The application's pool (authenticator), for workers. */
  pool: pg.Pool;
  llm: FakeLlmServer;
  /** A task queue of this scenario module alone (its workers poll it, its scenarios start on it). */
  taskQueue: string;
}

export interface ReplayScenario {
  workflowType: string;
  /** File name of the fixture: tests/replay/histories/<workflowType>/<path>.json */
  path: string;
  description: string;
  /** Starts the workflow, drives it to a close (or a state worth replaying), returns its workflow id (and run id when not the latest run). */
  run(ctx: ScenarioContext): Promise<string | { workflowId: string; runId: string }>;
}

export interface ScenarioModule {
  scenarios: ReplayScenario[];
  startWorkers?(ctx: ScenarioContext): Promise<Worker[]>;
  /** Releases what startWorkers set up besides the workers (fake servers). */
  close?(): Promise<void>;
}
