/**
 * The README's demo path against a deployed API: readiness, start a run, follow it to its end.
 * Used by the release workflow on the colour being released (its preview URL) and on the public
 * URL after the switch. Credentials of a standing smoke org come from the environment:
 * SMOKE_TOKEN (an org API key, `gap_live_…`, member scope), SMOKE_ORG_ID, SMOKE_AGENT_ID.
 * Exit 0 when the run completed, 1 otherwise.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

export interface SmokeOptions {
  url: string;
  token: string;
  orgId: string;
  agentId: string;
  timeoutMs?: number;
  log?: (msg: string) => void;
}

export async function smoke(opts: SmokeOptions): Promise<void> {
  const log = opts.log ?? ((msg: string) => console.log(`[smoke] ${msg}`));
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  const headers = { authorization: `Bearer ${opts.token}`, 'content-type': 'application/json' };
  const ready = await fetch(new URL('/readyz', opts.url));
  if (ready.status !== 200) throw new Error(`${opts.url}/readyz answered ${ready.status}: ${await ready.text()}`);
  const start = await fetch(new URL(`/v1/orgs/${opts.orgId}/agents/${opts.agentId}/runs`, opts.url), {
    method: 'POST',
    headers,
    body: JSON.stringify({ input: 'Smoke test: answer with one word.' }),
  });
  if (start.status !== 201) throw new Error(`starting a run answered ${start.status}: ${await start.text()}`);
  const { id } = (await start.json()) as { id: string };
  log(`run ${id} started`);
  for (;;) {
    const res = await fetch(new URL(`/v1/orgs/${opts.orgId}/runs/${id}`, opts.url), { headers });
    if (res.status !== 200) throw new Error(`reading run ${id} answered ${res.status}: ${await res.text()}`);
    const run = (await res.json()) as { status: string; error?: unknown };
    if (run.status === 'completed') {
      log(`run ${id} completed`);
      return;
    }
    if (run.status === 'failed' || run.status === 'cancelled') throw new Error(`run ${id} ended ${run.status}: ${JSON.stringify(run.error)}`);
    if (Date.now() > deadline) throw new Error(`run ${id} still ${run.status} after ${(opts.timeoutMs ?? 120_000) / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

export function smokeFromEnv(url: string): SmokeOptions {
  const { SMOKE_TOKEN: token, SMOKE_ORG_ID: orgId, SMOKE_AGENT_ID: agentId } = process.env;
  if (!token || !orgId || !agentId) throw new Error('SMOKE_TOKEN, SMOKE_ORG_ID and SMOKE_AGENT_ID must be set (the standing smoke org of this environment)');
  return { url, token, orgId, agentId };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { url: { type: 'string' } } });
  if (!values.url) {
    console.error('usage: tsx scripts/deploy/smoke.ts --url <api>');
    process.exit(2);
  }
  smoke(smokeFromEnv(values.url)).then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(`[smoke] FAILED: ${(err as Error).message}`);
      process.exit(1);
    },
  );
}
