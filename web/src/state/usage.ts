export interface UsageDay {
  day: string;
  runs: number;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

/**
 * One bar per day from `from` to `to` (days without usage are zero, not missing), heights scaled
 * to 0..100 against the busiest day. `metric` inputTokens means all tokens (in + out).
 */
export function chartBars(items: UsageDay[], from: string, to: string, metric: 'inputTokens' | 'runs' | 'costUsd') {
  const byDay = new Map(items.map((i) => [i.day, i]));
  const days: string[] = [];
  for (let d = new Date(`${from}T00:00:00Z`); d <= new Date(`${to}T00:00:00Z`); d = new Date(d.getTime() + 86_400_000)) days.push(d.toISOString().slice(0, 10));
  const value = (i: UsageDay | undefined) => (!i ? 0 : metric === 'inputTokens' ? i.inputTokens + i.outputTokens : i[metric]);
  const values = days.map((day) => ({ day, value: value(byDay.get(day)) }));
  const max = Math.max(0, ...values.map((v) => v.value));
  return { max, bars: values.map((v) => ({ ...v, height: max === 0 ? 0 : Math.max(v.value > 0 ? 1 : 0, Math.round((v.value / max) * 100)) })) };
}
