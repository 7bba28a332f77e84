/**
 * The figures every benchmark reports, and the one table `npm run bench` prints of them.
 *
 * A benchmark measures each figure once per round (BENCH_ROUNDS, default 5) and a ratio in the
 * same round as its baseline, so drift of the shared machine between rounds stays out of the
 * ratio; the table shows min, median and max of the rounds. Run alone, a benchmark prints the
 * table of its own figures; run by `npm run bench` (bench/all.ts), it also appends them as JSON
 * lines to BENCH_FIGURES_FILE, which the runner collects. Pure: the unit tests cover it.
 */
import { appendFileSync } from 'node:fs';

export const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 5));

export interface Goal {
  op: '<=' | '>=';
  value: number;
}

export interface Figure {
  /** The benchmark that measured it: 'agent-runs', 'rls', 'crm-sync', 'api'. */
  bench: string;
  /** Unique within the bench; a ratio names its numerator and denominator by id. */
  id: string;
  label: string;
  unit: string;
  /** One value per round (a figure measured once, like a history's event count, has one). */
  samples: number[];
  /** For a ratio: the ids of the figures (same bench) whose per-round values it divides. */
  ratioOf?: { numerator: string; denominator: string };
  goal?: Goal;
}

export interface Summary {
  n: number;
  min: number;
  median: number;
  max: number;
}

export function summarize(samples: readonly number[]): Summary {
  const sorted = samples.filter((s) => Number.isFinite(s)).sort((a, b) => a - b);
  if (sorted.length === 0) return { n: 0, min: NaN, median: NaN, max: NaN };
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { n: sorted.length, min: sorted[0]!, median, max: sorted.at(-1)! };
}

/** The nearest-rank percentile (p in 0–100) of one round's latencies; NaN for none. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/** Whether the median meets the goal; undefined without a goal or without samples. */
export function meetsGoal(figure: Pick<Figure, 'goal' | 'samples'>): boolean | undefined {
  if (!figure.goal) return undefined;
  const { median, n } = summarize(figure.samples);
  if (n === 0) return undefined;
  return figure.goal.op === '<=' ? median <= figure.goal.value : median >= figure.goal.value;
}

/** Three significant digits, without exponent notation for the magnitudes benchmarks produce. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return '–';
  const abs = Math.abs(value);
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

/** A ratio's baseline column: the denominator's label and median, e.g. `service_role: 0.41 ms`. */
export function baselineOf(figure: Figure, all: readonly Figure[]): string {
  if (!figure.ratioOf) return '';
  const denominator = all.find((f) => f.bench === figure.bench && f.id === figure.ratioOf!.denominator);
  if (!denominator) return `(${figure.ratioOf.denominator}: not measured)`;
  return `${denominator.label}: ${formatNumber(summarize(denominator.samples).median)} ${denominator.unit}`;
}

/** One table of every figure: bench, figure, unit, rounds, min, median, max, baseline, goal. */
export function renderTable(figures: readonly Figure[]): string {
  const header = ['bench', 'figure', 'unit', 'n', 'min', 'median', 'max', 'ratio of (median)', 'goal'];
  const rows = figures.map((f) => {
    const s = summarize(f.samples);
    const met = meetsGoal(f);
    const goal = f.goal ? `${f.goal.op} ${f.goal.value} ${met === undefined ? '' : met ? 'met' : 'NOT met'}`.trim() : '';
    return [f.bench, f.label, f.unit, String(s.n), formatNumber(s.min), formatNumber(s.median), formatNumber(s.max), baselineOf(f, figures), goal];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const numeric = new Set([3, 4, 5, 6]);
  const line = (cells: string[]) => `| ${cells.map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (numeric.has(i) ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

/**
 * Collects one benchmark's figures. `add` for a figure measured per round (call `sample` once
 * each round); `ratio` divides two figures round by round; `finish` prints the bench's table and
 * hands the figures to the runner.
 */
export class FigureLog {
  private readonly figures: Figure[] = [];

  constructor(private readonly bench: string) {}

  add(id: string, label: string, unit: string, goal?: Goal): { sample(value: number): void } {
    const figure: Figure = { bench: this.bench, id, label, unit, samples: [], ...(goal ? { goal } : {}) };
    this.figures.push(figure);
    return { sample: (value: number) => void figure.samples.push(value) };
  }

  /** Adds a ratio figure whose samples are numerator[i] / denominator[i], computed at `finish`. */
  ratio(id: string, label: string, numerator: string, denominator: string, goal?: Goal): void {
    this.figures.push({ bench: this.bench, id, label, unit: '×', samples: [], ratioOf: { numerator, denominator }, ...(goal ? { goal } : {}) });
  }

  /** Every figure with ratios filled in. */
  all(): Figure[] {
    const byId = new Map(this.figures.map((f) => [f.id, f]));
    for (const f of this.figures) {
      if (!f.ratioOf) continue;
      const num = byId.get(f.ratioOf.numerator)?.samples ?? [];
      const den = byId.get(f.ratioOf.denominator)?.samples ?? [];
      f.samples = num.slice(0, den.length).map((n, i) => n / den[i]!);
    }
    return this.figures;
  }

  finish(): Figure[] {
    const figures = this.all();
    console.log(`\n${renderTable(figures)}\n`);
    const file = process.env.BENCH_FIGURES_FILE;
    if (file) appendFileSync(file, figures.map((f) => JSON.stringify(f)).join('\n') + '\n');
    return figures;
  }
}
