/** The summary and table logic of `npm run bench` (bench/support/figures.ts); the benchmarks themselves are printed, never asserted. */
import { describe, expect, it } from 'vitest';
import { baselineOf, FigureLog, formatNumber, meetsGoal, percentile, renderTable, summarize, type Figure } from '../../bench/support/figures.js';

describe('summarize', () => {
  it('gives min, median and max of an odd number of rounds', () => {
    expect(summarize([3, 1, 5, 2, 4])).toEqual({ n: 5, min: 1, median: 3, max: 5 });
  });
  it('averages the two middle values of an even number', () => {
    expect(summarize([4, 1, 3, 2])).toEqual({ n: 4, min: 1, median: 2.5, max: 4 });
  });
  it('ignores rounds that produced no number, and reports none when none did', () => {
    expect(summarize([NaN, 2, Infinity])).toEqual({ n: 1, min: 2, median: 2, max: 2 });
    expect(summarize([]).n).toBe(0);
    expect(summarize([]).median).toBeNaN();
  });
});

describe('percentile', () => {
  it('takes the value at rank floor(p% of n), so p99 of 100 latencies is the largest and p50 the upper middle', () => {
    const latencies = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentile(latencies, 99)).toBe(100);
    expect(percentile(latencies, 95)).toBe(96);
    expect(percentile(latencies, 50)).toBe(51);
    expect(percentile([7], 95)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
  });
});

describe('meetsGoal', () => {
  it('judges the median, not the best round', () => {
    expect(meetsGoal({ goal: { op: '<=', value: 1.5 }, samples: [1.2, 1.6, 1.7] })).toBe(false);
    expect(meetsGoal({ goal: { op: '<=', value: 1.5 }, samples: [1.2, 1.4, 1.7] })).toBe(true);
    expect(meetsGoal({ goal: { op: '>=', value: 0.8 }, samples: [0.79, 0.81, 0.9] })).toBe(true);
    expect(meetsGoal({ samples: [1] })).toBeUndefined();
  });
});

describe('FigureLog', () => {
  it('divides a ratio round by round, so each round is against the baseline of that round', () => {
    const log = new FigureLog('rls');
    const member = log.add('m', 'member', 'ms');
    const service = log.add('s', 'service_role', 'ms');
    log.ratio('r', 'member / service_role', 'm', 's', { op: '<=', value: 1.5 });
    for (const [m, s] of [[2, 1], [3, 2], [10, 8]] as const) {
      member.sample(m);
      service.sample(s);
    }
    const ratio = log.all().find((f) => f.id === 'r')!;
    expect(ratio.samples).toEqual([2, 1.5, 1.25]);
    expect(summarize(ratio.samples).median).toBe(1.5);
    expect(ratio.unit).toBe('×');
  });
});

describe('renderTable', () => {
  const figures: Figure[] = [
    { bench: 'rls', id: 'm', label: 'count: member', unit: 'ms', samples: [12, 10, 11] },
    { bench: 'rls', id: 's', label: 'count: service_role', unit: 'ms', samples: [8, 8.5, 9] },
    { bench: 'rls', id: 'r', label: 'count: member / service_role', unit: '×', samples: [1.5, 1.18, 1.22], ratioOf: { numerator: 'm', denominator: 's' }, goal: { op: '<=', value: 1.5 } },
  ];

  it('prints one row per figure with min, median, max, the baseline of a ratio and whether its goal is met', () => {
    const lines = renderTable(figures).split('\n');
    expect(lines).toHaveLength(2 + figures.length);
    expect(lines[0]).toMatch(/\| bench +\| figure +\| unit +\| +n \| +min \| +median \| +max \| ratio of \(median\) +\| goal +\|/);
    const ratioRow = lines[4]!.split('|').map((c) => c.trim());
    expect(ratioRow.slice(1, 10)).toEqual(['rls', 'count: member / service_role', '×', '3', '1.18', '1.22', '1.50', 'count: service_role: 8.50 ms', '<= 1.5 met']);
    const memberRow = lines[2]!.split('|').map((c) => c.trim());
    expect(memberRow.slice(5, 8)).toEqual(['10.0', '11.0', '12.0']);
  });

  it('names a baseline that was not measured instead of inventing one', () => {
    expect(baselineOf({ ...figures[2]!, ratioOf: { numerator: 'm', denominator: 'gone' } }, figures)).toBe('(gone: not measured)');
  });

  it('formats magnitudes with three significant digits', () => {
    expect([formatNumber(1234.5), formatNumber(12.345), formatNumber(1.2345), formatNumber(0.012345), formatNumber(NaN)]).toEqual(['1235', '12.3', '1.23', '0.012', '–']);
  });
});
