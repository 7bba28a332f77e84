import { useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { chartBars } from '../state/usage';
import { ErrorBox, formatUsd, Loading, Page, useLoad } from '../ui';

const day = (d: Date) => d.toISOString().slice(0, 10);
type Metric = 'runs' | 'inputTokens' | 'costUsd';
const METRICS: Array<[Metric, string]> = [
  ['runs', 'Runs'],
  ['inputTokens', 'Tokens'],
  ['costUsd', 'Cost'],
];
const unit = (metric: Metric, value: number) => (metric === 'costUsd' ? formatUsd(value) : metric === 'runs' ? `${value} runs` : `${value} tokens`);

/**
 * Runs, tokens and cost per day over the last 30 days: an SVG bar chart of the chosen measure,
 * with the same numbers in a table (the chart's accessible alternative, which it points to).
 */
export function Usage({ orgId }: { orgId: string }) {
  const [metric, setMetric] = useState<Metric>('inputTokens');
  const to = new Date();
  const from = new Date(to.getTime() - 29 * 86_400_000);
  const usage = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}/usage', { params: { path: { orgId }, query: { from: day(from), to: day(to) } } })), [orgId]);
  if (usage.error)
    return (
      <Page title="Usage">
        <ErrorBox error={usage.error} />
      </Page>
    );
  if (!usage.data) return <Loading what="usage" />;
  const { totals, items } = usage.data;
  const bars = chartBars(items, day(from), day(to), metric);
  const label = METRICS.find(([m]) => m === metric)![1];
  const busiest = bars.bars.reduce((a, b) => (b.value > a.value ? b : a), bars.bars[0]!);
  return (
    <Page title="Usage">
      <dl class="facts">
        <div>
          <dt>Runs</dt>
          <dd data-testid="usage-runs">{totals.runs}</dd>
        </div>
        <div>
          <dt>Tokens</dt>
          <dd data-testid="usage-tokens">{totals.inputTokens + totals.outputTokens}</dd>
        </div>
        <div>
          <dt>Cost</dt>
          <dd data-testid="usage-cost">{formatUsd(totals.costUsd)}</dd>
        </div>
      </dl>
      <h2 id="usage-chart-title">{label} per day (last 30 days)</h2>
      <fieldset class="row">
        <legend>Show</legend>
        {METRICS.map(([m, text]) => (
          <label key={m} class="inline">
            <input type="radio" name="metric" value={m} checked={metric === m} onChange={() => setMetric(m)} /> {text}
          </label>
        ))}
      </fieldset>
      <svg
        class="chart"
        viewBox="0 0 300 100"
        role="img"
        aria-labelledby="usage-chart-title"
        aria-describedby="usage-chart-summary"
        preserveAspectRatio="none"
      >
        {bars.bars.map((b, i) => (
          <rect key={b.day} x={i * 10 + 1} y={100 - b.height} width={8} height={b.height}>
            <title>
              {b.day}: {unit(metric, b.value)}
            </title>
          </rect>
        ))}
      </svg>
      <p id="usage-chart-summary" class="muted">
        {bars.max === 0 ? `No usage from ${day(from)} to ${day(to)}.` : `Busiest day ${busiest.day} with ${unit(metric, busiest.value)}; every day's numbers are in the table below.`}
      </p>
      <table class="usage">
        <caption>Usage per day with any activity</caption>
        <thead>
          <tr>
            <th scope="col">Day</th>
            <th scope="col">Runs</th>
            <th scope="col">Tokens (in / out)</th>
            <th scope="col">Cost</th>
          </tr>
        </thead>
        <tbody>
          {items.length === 0 && (
            <tr>
              <td colSpan={4}>No runs in these 30 days.</td>
            </tr>
          )}
          {items.map((i) => (
            <tr key={i.day}>
              <th scope="row">{i.day}</th>
              <td>{i.runs}</td>
              <td>
                {i.inputTokens + i.outputTokens} ({i.inputTokens} / {i.outputTokens})
              </td>
              <td>{formatUsd(i.costUsd)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Page>
  );
}
