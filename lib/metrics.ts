/**
 * Every Prometheus metric the application defines, in one place, so the alert rules and the
 * Grafana dashboard in docker/ can be checked against what the code emits
 * (tests/ops/metrics.test.ts). Increment them from anywhere outside workflow code:
 *
 *   import { llmRequests } from '../lib/metrics.js';
 *   llmRequests.inc({ model, outcome: 'ok' });
 *
 * Labels are low-cardinality on purpose: model, provider, route template, status. Never org,
 * run or connection ids (use logs and the Temporal UI for those).
 *
 * The Temporal SDK's own worker metrics (`temporal_*`) are not here: the Rust core exports them
 * on its own listener (TEMPORAL_METRICS_BIND_ADDRESS, see workers/telemetry.ts).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { DEFAULT_PRICES } from './pricing.js';
import type { ModelPatterns } from './spend.js';

export const registry = new Registry();
collectDefaultMetrics({ register: registry });

// API ------------------------------------------------------------------------------------------

export const httpRequestDuration = new Histogram({
  name: 'gap_http_request_duration_seconds',
  help: 'API request duration by route template, method and status code',
  labelNames: ['method', 'route', 'status_code'] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

export const httpServerErrors = new Counter({
  name: 'gap_http_server_errors_total',
  help: 'API answers with a 5xx status (internal errors, dependencies down)',
  labelNames: ['method', 'route', 'status_code'] as const,
  registers: [registry],
});

// LLM ------------------------------------------------------------------------------------------

export type LlmOutcome = 'ok' | 'rate_limited' | 'rejected' | 'auth' | 'server' | 'timeout' | 'network' | 'invalid_response' | 'aborted' | 'error';

export const llmRequests = new Counter({
  name: 'gap_llm_requests_total',
  help: 'LLM chat completion calls by model and outcome',
  labelNames: ['model', 'outcome'] as const,
  registers: [registry],
});

export const llmRequestDuration = new Histogram({
  name: 'gap_llm_request_duration_seconds',
  help: 'LLM call latency by model and outcome',
  labelNames: ['model', 'outcome'] as const,
  buckets: [0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 300],
  registers: [registry],
});

export const llmTokens = new Counter({
  name: 'gap_llm_tokens_total',
  help: 'Tokens used by model and direction (input, output)',
  labelNames: ['model', 'direction'] as const,
  registers: [registry],
});

export const llmCostUsd = new Counter({
  name: 'gap_llm_cost_usd_total',
  help: 'Estimated LLM spend in US dollars by model',
  labelNames: ['model'] as const,
  registers: [registry],
});

// CRM ------------------------------------------------------------------------------------------

export const crmRequests = new Counter({
  name: 'gap_crm_requests_total',
  help: 'HTTP requests to CRM providers by provider and status (HTTP status code, or "network")',
  labelNames: ['provider', 'status'] as const,
  registers: [registry],
});

export const crmRecordsSynced = new Counter({
  name: 'gap_crm_records_synced_total',
  help: 'CRM records written to Postgres by sync, by provider and object type',
  labelNames: ['provider', 'object_type'] as const,
  registers: [registry],
});

export const crmReplies = new Counter({
  name: 'gap_crm_replies_total',
  help: "Agent answers (parts) sent into leads' CRM threads by provider, route (hubspot_thread, kommo_talk, kommo_salesbot) and outcome (sent, failed)",
  labelNames: ['provider', 'route', 'outcome'] as const,
  registers: [registry],
});

export const crmReplyQuotaWarnings = new Counter({
  name: 'gap_crm_reply_quota_warnings_total',
  help: "Connections whose monthly send quota (Kommo send_message) passed the warning share this month",
  labelNames: ['provider'] as const,
  registers: [registry],
});

let measureSyncLag: (() => Promise<Array<{ provider: string; seconds: number }>>) | undefined;

export const crmSyncLag = new Gauge({
  name: 'gap_crm_sync_lag_seconds',
  help: 'Per provider, the oldest watermark among active connections: how stale the most behind synced data is',
  labelNames: ['provider'] as const,
  registers: [registry],
  // Read from Postgres at scrape time: right after restarts, and it grows while syncs are stuck.
  async collect() {
    if (!measureSyncLag) return;
    try {
      this.reset();
      for (const { provider, seconds } of await measureSyncLag()) this.set({ provider }, seconds);
    } catch {
      metricsScrapeErrors.inc({ metric: 'gap_crm_sync_lag_seconds' });
    }
  },
});

// Approvals --------------------------------------------------------------------------------------

let countPendingApprovals: (() => Promise<number>) | undefined;

export const approvalsPending = new Gauge({
  name: 'gap_approvals_pending',
  help: 'Tool calls waiting for a human decision, across all organizations',
  registers: [registry],
  // Counted in Postgres at scrape time, so it is right after restarts and across workers.
  async collect() {
    if (!countPendingApprovals) return;
    try {
      this.set(await countPendingApprovals());
    } catch {
      metricsScrapeErrors.inc({ metric: 'gap_approvals_pending' });
    }
  },
});

/**
 * Makes this process report `gap_approvals_pending` (the worker does). A cross-tenant count is
 * operator tooling: a security-definer function that returns one number
 * (supabase/migrations/20261126130000_ops_metrics.sql), executable by the application's login
 * role only, outside any tenant transaction.
 */
export function trackApprovalsPending(pool: pg.Pool): void {
  countPendingApprovals = async () => {
    const { rows } = await pool.query<{ n: string }>(`select private.ops_pending_approvals() as n`);
    return Number(rows[0]?.n ?? 0);
  };
}

/** Makes this process report `gap_crm_sync_lag_seconds` (the worker does); see above. */
export function trackCrmSyncLag(pool: pg.Pool): void {
  measureSyncLag = async () => {
    const { rows } = await pool.query<{ provider: string; lag_seconds: number }>(`select provider, lag_seconds from private.ops_crm_sync_lag()`);
    return rows.map((r) => ({ provider: r.provider, seconds: Number(r.lag_seconds) }));
  };
}

/** All scrape-time database metrics of a worker process. */
export function trackDatabaseMetrics(pool: pg.Pool): void {
  trackApprovalsPending(pool);
  trackCrmSyncLag(pool);
}

export const metricsScrapeErrors = new Counter({
  name: 'gap_metrics_collect_errors_total',
  help: 'Failures while collecting a metric at scrape time (e.g. the approvals count query)',
  labelNames: ['metric'] as const,
  registers: [registry],
});

/**
 * The model names metrics may carry: an agent's model is whatever an admin typed, and each new
 * name would be a new time series. Names the operator's catalog lists keep theirs, names under a
 * listed `vendor/*` prefix take the prefix, everything else is `other`. The worker sets the
 * catalog at start (LLM_MODELS or the price table, lib/spend.ts); until then, the built-in prices.
 */
let metricModels: ModelPatterns = Object.keys(DEFAULT_PRICES).filter((pattern) => pattern !== '*');

export function setMetricModels(patterns: ModelPatterns): void {
  metricModels = patterns;
}

export function modelLabel(model: string): string {
  if (metricModels.includes(model) && !model.endsWith('*')) return model;
  let best: string | undefined;
  for (const pattern of metricModels) {
    if (pattern.endsWith('*') && model.startsWith(pattern.slice(0, -1)) && (!best || pattern.length > best.length)) best = pattern;
  }
  return best ?? 'other';
}

/** Records one LLM call: count, latency, and on success tokens and cost. */
export function recordLlmCall(sample: {
  model: string;
  outcome: LlmOutcome;
  seconds: number;
  inputTokens?: number;
  outputTokens?: number;
  costUsd?: number;
}): void {
  const model = modelLabel(sample.model);
  llmRequests.inc({ model, outcome: sample.outcome });
  llmRequestDuration.observe({ model, outcome: sample.outcome }, sample.seconds);
  if (sample.inputTokens) llmTokens.inc({ model, direction: 'input' }, sample.inputTokens);
  if (sample.outputTokens) llmTokens.inc({ model, direction: 'output' }, sample.outputTokens);
  if (sample.costUsd) llmCostUsd.inc({ model }, sample.costUsd);
}

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

/**
 * Serves GET /metrics on a listener of its own. Not on the API's port: the public listener is
 * reachable by tenants, metrics describe every tenant's traffic, and a separate port lets the
 * network (a Kubernetes NetworkPolicy, compose's internal network) restrict who scrapes
 * without an auth scheme Prometheus would need credentials for.
 */
export interface Readiness {
  ready: boolean;
  /** One line per dependency: `ok`, or what is wrong with it. */
  checks: Record<string, string>;
}

export async function startMetricsServer(opts: {
  host: string;
  port: number;
  registry?: Registry;
  /**
   * Processes without an HTTP server of their own (the worker) answer Kubernetes' probes here:
   * GET /healthz (the process is alive) and GET /readyz (200 or 503 with the checks as JSON).
   */
  readiness?: () => Promise<Readiness>;
}): Promise<MetricsServer> {
  const source = opts.registry ?? registry;
  const readiness = opts.readiness;
  const server: Server = createServer((req, res) => {
    const route = req.method === 'GET' ? (req.url ?? '').split('?')[0] : undefined;
    if (readiness && route === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}\n');
      return;
    }
    if (readiness && route === '/readyz') {
      readiness().then(
        (result) => res.writeHead(result.ready ? 200 : 503, { 'content-type': 'application/json' }).end(`${JSON.stringify({ status: result.ready ? 'ok' : 'unavailable', checks: result.checks })}\n`),
        (err: unknown) => res.writeHead(503, { 'content-type': 'application/json' }).end(`${JSON.stringify({ status: 'unavailable', error: (err as Error).message })}\n`),
      );
      return;
    }
    if (route !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    source.metrics().then(
      (body) => res.writeHead(200, { 'content-type': source.contentType }).end(body),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(err as Error).message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host}:${port}/metrics`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
