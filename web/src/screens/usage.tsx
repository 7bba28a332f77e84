import { api, ok } from '../api/client';
import { chartBars } from '../state/usage';
import { ErrorBox, formatUsd, Loading, Page, useLoad } from '../ui';

const day = (d: Date) => d.toISOString().slice(0, 10);

/** Runs, tokens and cost per day over the last 30 days, as an inline SVG bar chart. */
export function Usage({ orgId }: { orgId: string }) {
  const to = new Date();
  const from = new Date(to.getTime() - 29 * 86_400_000);
  const usage = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}/usage', { params: { path: { orgId }, query: { from: day(from), to: day(to) } } })), [orgId]);
  if (usage.error) return <ErrorBox error={usage.error} />;
  if (!usage.data) return <Loading what="usage" />;
  const { totals, items } = usage.data;
  const bars = chartBars(items, day(from), day(to), 'inputTokens');
  return (
    <Page title="Usage">
      <dl class="facts">
        <div>
          <dt>Runs</dt>
          <dd>{totals.runs}</dd>
        </div>
        <div>
          <dt>Tokens</dt>
          <dd>{totals.inputTokens + totals.outputTokens}</dd>
        </div>
        <div>
          <dt>Cost</dt>
          <dd>{formatUsd(totals.costUsd)}</dd>
        </div>
      </dl>
      <h2>Tokens per day (last 30 days)</h2>
      <svg class="chart" viewBox="0 0 300 100" role="img" aria-label={`Tokens per day, peak ${bars.max}`} preserveAspectRatio="none">
        {bars.bars.map((b, i) => (
          <rect key={b.day} x={i * 10 + 1} y={100 - b.height} width={8} height={b.height}>
            <title>
              {b.day}: {b.value} tokens
            </title>
          </rect>
        ))}
      </svg>
      <table class="usage">
        <caption class="visually-hidden">Usage per day</caption>
        <thead>
          <tr>
            <th scope="col">Day</th>
            <th scope="col">Runs</th>
            <th scope="col">Tokens</th>
            <th scope="col">Cost</th>
          </tr>
        </thead>
        <tbody>
          {items.map((i) => (
            <tr key={i.day}>
              <th scope="row">{i.day}</th>
              <td>{i.runs}</td>
              <td>{i.inputTokens + i.outputTokens}</td>
              <td>{formatUsd(i.costUsd)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Page>
  );
}
