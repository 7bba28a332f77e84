/**
 * The post-deploy watch: polls Prometheus' alerts for a set time after production switched and
 * fails as soon as one of the named alerts is firing (the release workflow then rolls back).
 * Pending alerts do not fail it: their `for:` clause has not elapsed. Prometheus that cannot be
 * reached three times in a row also fails it: a watch that sees nothing must not pass.
 *
 *   tsx scripts/deploy/watch.ts --prometheus URL --seconds 900 --alerts GapApiServerErrors,GapApiSlow
 *
 * PROMETHEUS_TOKEN, when set, is sent as a bearer token.
 */
import { parseArgs } from 'node:util';

interface PromAlert {
  labels: { alertname: string; [key: string]: string };
  state: 'firing' | 'pending' | 'inactive';
  activeAt?: string;
}

const { values } = parseArgs({
  options: { prometheus: { type: 'string' }, seconds: { type: 'string' }, alerts: { type: 'string' }, interval: { type: 'string' } },
});
const log = (msg: string) => console.log(`[watch] ${msg}`);

async function main(): Promise<number> {
  if (!values.prometheus || !values.alerts) {
    console.error('usage: tsx scripts/deploy/watch.ts --prometheus URL --seconds N --alerts A,B[,…] [--interval S]');
    return 2;
  }
  const names = new Set(values.alerts.split(',').map((a) => a.trim()).filter(Boolean));
  const seconds = Number(values.seconds ?? 900);
  const interval = Number(values.interval ?? 15) * 1000;
  const headers: Record<string, string> = process.env.PROMETHEUS_TOKEN ? { authorization: `Bearer ${process.env.PROMETHEUS_TOKEN}` } : {};
  const deadline = Date.now() + seconds * 1000;
  let unreachable = 0;
  log(`watching ${[...names].join(', ')} for ${seconds} s`);
  for (;;) {
    try {
      const res = await fetch(new URL('/api/v1/alerts', values.prometheus), { headers, signal: AbortSignal.timeout(10_000) });
      if (res.status !== 200) throw new Error(`answered ${res.status}`);
      const body = (await res.json()) as { data: { alerts: PromAlert[] } };
      unreachable = 0;
      const firing = body.data.alerts.filter((a) => a.state === 'firing' && names.has(a.labels.alertname));
      if (firing.length > 0) {
        for (const a of firing) log(`FIRING ${a.labels.alertname} ${JSON.stringify(a.labels)} since ${a.activeAt}`);
        return 1;
      }
    } catch (err) {
      unreachable++;
      log(`Prometheus unreachable (${unreachable}/3): ${(err as Error).message}`);
      if (unreachable >= 3) return 1;
    }
    if (Date.now() >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, Math.min(interval, Math.max(0, deadline - Date.now()))));
  }
  log('no watched alert fired');
  return 0;
}

void main().then((code) => process.exit(code));
