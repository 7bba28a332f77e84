/**
 * What a load test measured, per route, and its verdict. The verdict is about errors, never
 * about times: a slow staging is a finding for a person, a 5xx or another org's data is a
 * failed release.
 */

export interface RouteStats {
  route: string;
  /** The steady rate the route was driven at; `req/s` below it means the stack could not keep up. */
  targetPerSecond?: number;
  /** Answers by status code; transport errors and timeouts under `errors`. */
  statuses: Map<number, number>;
  latenciesMs: number[];
  /** Answers that were not what the route must answer (wrong status, malformed body). */
  unexpected: number;
  /** Connection errors and timeouts: no HTTP answer at all. */
  errors: number;
  /** Another org's data came back (a cross-org probe answered anything but 404, or a body leaked). */
  crossOrg: number;
  /** A few examples of what went wrong, for the person reading the output. */
  samples: string[];
}

export interface LoadReport {
  durationSeconds: number;
  routes: RouteStats[];
  /** Routes the run could not exercise and why (e.g. CRM webhooks on a server without CRM). */
  skipped: Array<{ route: string; reason: string }>;
}

export interface Verdict {
  ok: boolean;
  reasons: string[];
}

export function newRouteStats(route: string): RouteStats {
  return { route, statuses: new Map(), latenciesMs: [], unexpected: 0, errors: 0, crossOrg: 0, samples: [] };
}

export function recordAnswer(stats: RouteStats, status: number, latencyMs: number): void {
  stats.statuses.set(status, (stats.statuses.get(status) ?? 0) + 1);
  stats.latenciesMs.push(latencyMs);
}

export function noteSample(stats: RouteStats, sample: string): void {
  if (stats.samples.length < 5) stats.samples.push(sample.slice(0, 300));
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const count = (stats: RouteStats, match: (status: number) => boolean) =>
  [...stats.statuses].reduce((sum, [status, n]) => (match(status) ? sum + n : sum), 0);

export const answers = (stats: RouteStats) => count(stats, () => true);
export const serverErrors = (stats: RouteStats) => count(stats, (s) => s >= 500);
/** Everything that counts against the error rate: 5xx, unexpected answers and no answer. */
export const failures = (stats: RouteStats) => serverErrors(stats) + stats.unexpected + stats.errors;

export function judge(report: LoadReport, maxErrorRate: number): Verdict {
  const reasons: string[] = [];
  let total = 0;
  let failed = 0;
  for (const stats of report.routes) {
    const requests = answers(stats) + stats.errors;
    total += requests;
    failed += failures(stats);
    const fivexx = serverErrors(stats);
    if (fivexx > 0) reasons.push(`${stats.route}: ${fivexx} answer(s) with a 5xx status`);
    if (stats.crossOrg > 0) reasons.push(`${stats.route}: ${stats.crossOrg} answer(s) exposed another org's run`);
    if (requests === 0) reasons.push(`${stats.route}: no request completed`);
  }
  const rate = total === 0 ? 1 : failed / total;
  if (rate > maxErrorRate) reasons.push(`error rate ${(rate * 100).toFixed(2)} % is over the threshold of ${(maxErrorRate * 100).toFixed(2)} %`);
  return { ok: reasons.length === 0, reasons };
}

const ms = (v: number) => (Number.isNaN(v) ? '-' : v < 10 ? v.toFixed(1) : v.toFixed(0));

/** A fixed-width table a person reads in a CI log, then the verdict. */
export function formatReport(report: LoadReport, verdict: Verdict): string {
  const header = ['route', 'requests', 'target/s', 'req/s', 'p50 ms', 'p95 ms', 'p99 ms', '2xx', '4xx', '5xx', 'unexpected', 'no answer', 'cross-org'];
  const rows = report.routes.map((s) => [
    s.route,
    String(answers(s) + s.errors),
    s.targetPerSecond === undefined ? '-' : String(s.targetPerSecond),
    ((answers(s) + s.errors) / report.durationSeconds).toFixed(1),
    ms(percentile(s.latenciesMs, 50)),
    ms(percentile(s.latenciesMs, 95)),
    ms(percentile(s.latenciesMs, 99)),
    String(count(s, (c) => c >= 200 && c < 300)),
    String(count(s, (c) => c >= 400 && c < 500)),
    String(serverErrors(s)),
    String(s.unexpected),
    String(s.errors),
    String(s.crossOrg),
  ]);
  const total = report.routes.reduce((sum, s) => sum + answers(s) + s.errors, 0);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const out = [line(header), ...rows.map(line)];
  out.push(`total: ${total} requests in ${report.durationSeconds} s, ${(total / report.durationSeconds).toFixed(1)} req/s`);
  for (const s of report.skipped) out.push(`skipped ${s.route}: ${s.reason}`);
  for (const s of report.routes) for (const sample of s.samples) out.push(`  ${s.route}: ${sample}`);
  out.push(verdict.ok ? 'PASS: no 5xx, no cross-org answer, error rate within the threshold' : `FAIL:\n${verdict.reasons.map((r) => `  - ${r}`).join('\n')}`);
  return out.join('\n');
}

/** The report as JSON (for CI artifacts and docs), latencies summarized. */
export function reportJson(report: LoadReport, verdict: Verdict) {
  return {
    durationSeconds: report.durationSeconds,
    ok: verdict.ok,
    reasons: verdict.reasons,
    skipped: report.skipped,
    routes: report.routes.map((s) => ({
      route: s.route,
      requests: answers(s) + s.errors,
      targetPerSecond: s.targetPerSecond ?? null,
      perSecond: Number(((answers(s) + s.errors) / report.durationSeconds).toFixed(2)),
      p50Ms: percentile(s.latenciesMs, 50),
      p95Ms: percentile(s.latenciesMs, 95),
      p99Ms: percentile(s.latenciesMs, 99),
      statuses: Object.fromEntries(s.statuses),
      unexpected: s.unexpected,
      noAnswer: s.errors,
      crossOrg: s.crossOrg,
    })),
  };
}
