/**
 * The load itself: every route at its own steady rate for the same duration, as the tenants
 * provisioned before. Request/response routes run under autocannon (one instance per route, so
 * each latency belongs to one route; `overallRate` keeps the rate steady instead of flooding);
 * the event stream is driven here, because autocannon counts a response only when it ends and
 * an SSE stream does not.
 *
 * Every answer is checked, not just counted: a read must return the run asked for, a list only
 * the caller's org's runs, and each user's probes of another org's run ids must answer 404.
 */
import autocannon from 'autocannon';
import type { LoadOrg, Provisioned } from './provision.js';
import { newRouteStats, noteSample, recordAnswer, type LoadReport, type RouteStats } from './report.js';

export interface LoadOptions {
  baseUrl: string;
  durationSeconds: number;
  /** Requests per second over all routes. */
  rate: number;
  /** How long each event stream stays open at most (it closes earlier at its first durable event). */
  streamHoldMs: number;
  log: (msg: string) => void;
}

/** Share of the total rate each route gets: mostly reads, as a console and integrations would. */
export const ROUTE_WEIGHTS = {
  startRun: 0.15,
  getRun: 0.3,
  listRuns: 0.1,
  streamEvents: 0.1,
  crmWebhook: 0.15,
  crossOrgProbe: 0.2,
} as const;

const ROUTE_NAMES: Record<keyof typeof ROUTE_WEIGHTS, string> = {
  startRun: 'POST /v1/orgs/:orgId/agents/:agentId/runs',
  getRun: 'GET /v1/orgs/:orgId/runs/:runId',
  listRuns: 'GET /v1/orgs/:orgId/runs',
  streamEvents: 'GET /v1/orgs/:orgId/runs/:runId/events (SSE)',
  crmWebhook: 'POST /v1/webhooks/crm/kommo/:connectionId',
  crossOrgProbe: "another org's run ids (must answer 404)",
};

/** Runs kept per org for reads; older ones stay valid, this only bounds memory. */
const RUN_IDS_KEPT = 500;

type Pick = { org: LoadOrg; user: LoadOrg['users'][number]; runId: string };

class Tenants {
  private n = 0;
  readonly runOwner = new Map<string, string>();
  constructor(readonly orgs: LoadOrg[]) {
    for (const org of orgs) for (const runId of org.runIds) this.runOwner.set(runId, org.orgId);
  }
  /** Round robin over orgs, users and runs, so every tenant carries its share of the load. */
  next(): Pick {
    const i = this.n++;
    const org = this.orgs[i % this.orgs.length]!;
    const user = org.users[Math.floor(i / this.orgs.length) % org.users.length]!;
    const runId = org.runIds[Math.floor(i / this.orgs.length) % org.runIds.length]!;
    return { org, user, runId };
  }
  /** A different org than `org`, and one of its runs. */
  other(org: LoadOrg): { org: LoadOrg; runId: string } {
    const index = this.orgs.indexOf(org);
    const other = this.orgs[(index + 1 + (this.n++ % (this.orgs.length - 1))) % this.orgs.length]!;
    return { org: other, runId: other.runIds[this.n % other.runIds.length]! };
  }
  addRun(org: LoadOrg, runId: string): void {
    this.runOwner.set(runId, org.orgId);
    org.runIds.push(runId);
    if (org.runIds.length > RUN_IDS_KEPT) org.runIds.shift();
  }
}

type Context = { pick?: Pick; probe?: { orgId: string; runId: string; form: string }; expected?: number[] };

interface CannonRoute {
  key: keyof typeof ROUTE_WEIGHTS;
  method: 'GET' | 'POST';
  /** Builds the request and records in `context` what its answer must look like. */
  build(context: Context): { path: string; headers: Record<string, string>; body?: string };
  check(stats: RouteStats, status: number, body: string, context: Context): void;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function parse(body: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(body) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

function expectStatus(stats: RouteStats, status: number, body: string, expected: number[]): boolean {
  if (expected.includes(status)) return true;
  // 5xx are counted from the status itself; anything else unexpected is a failed request.
  if (status < 500) stats.unexpected++;
  noteSample(stats, `${status} (expected ${expected.join('/')}): ${body}`);
  return false;
}

function cannonRoutes(tenants: Tenants): CannonRoute[] {
  let webhookSeq = 0;
  const webhookOrgs = tenants.orgs.filter((o) => o.webhookPath);
  return [
    {
      key: 'startRun',
      method: 'POST',
      build(context) {
        const pick = tenants.next();
        context.pick = pick;
        return {
          path: `/v1/orgs/${pick.org.orgId}/agents/${pick.org.agentId}/runs`,
          headers: { ...bearer(pick.user.token), 'content-type': 'application/json' },
          body: JSON.stringify({ input: `load test run for ${pick.org.orgId}` }),
        };
      },
      check(stats, status, body, context) {
        if (!expectStatus(stats, status, body, [201, 200])) return;
        const id = parse(body)?.id;
        if (typeof id !== 'string') {
          stats.unexpected++;
          noteSample(stats, `no run id in ${body}`);
          return;
        }
        tenants.addRun(context.pick!.org, id);
      },
    },
    {
      key: 'getRun',
      method: 'GET',
      build(context) {
        const pick = tenants.next();
        context.pick = pick;
        return { path: `/v1/orgs/${pick.org.orgId}/runs/${pick.runId}`, headers: bearer(pick.user.token) };
      },
      check(stats, status, body, context) {
        if (!expectStatus(stats, status, body, [200])) return;
        const run = parse(body);
        if (run?.id !== context.pick!.runId) {
          const owner = typeof run?.id === 'string' ? tenants.runOwner.get(run.id) : undefined;
          if (owner && owner !== context.pick!.org.orgId) stats.crossOrg++;
          else stats.unexpected++;
          noteSample(stats, `asked for run ${context.pick!.runId}, got ${body}`);
        }
      },
    },
    {
      key: 'listRuns',
      method: 'GET',
      build(context) {
        const pick = tenants.next();
        context.pick = pick;
        return { path: `/v1/orgs/${pick.org.orgId}/runs?limit=20`, headers: bearer(pick.user.token) };
      },
      check(stats, status, body, context) {
        if (!expectStatus(stats, status, body, [200])) return;
        const items = parse(body)?.items;
        if (!Array.isArray(items)) {
          stats.unexpected++;
          noteSample(stats, `no items in ${body}`);
          return;
        }
        const foreign = items.filter((r: { id?: unknown }) => {
          const owner = typeof r.id === 'string' ? tenants.runOwner.get(r.id) : undefined;
          return owner !== undefined && owner !== context.pick!.org.orgId;
        });
        if (foreign.length > 0) {
          stats.crossOrg++;
          noteSample(stats, `org ${context.pick!.org.orgId} listed ${foreign.length} run(s) of other orgs`);
        }
      },
    },
    {
      key: 'crmWebhook',
      method: 'POST',
      build() {
        const org = webhookOrgs[webhookSeq % webhookOrgs.length]!;
        const seq = webhookSeq++;
        // An incoming chat message about a lead: recorded as a delivery and handed to the
        // agents listening to messages (none here, so no CRM read and no run). Unique text per
        // request, so every delivery is new and none is deduplicated away.
        const form = new URLSearchParams({
          'message[add][0][type]': 'incoming',
          'message[add][0][entity_type]': 'lead',
          'message[add][0][entity_id]': String(1000 + (seq % 5000)),
          'message[add][0][text]': `load test message ${seq} ${Date.now()}`,
        });
        return { path: org.webhookPath!, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() };
      },
      check(stats, status, body) {
        expectStatus(stats, status, body, [200]);
      },
    },
    {
      key: 'crossOrgProbe',
      method: 'GET',
      build(context) {
        const pick = tenants.next();
        const other = tenants.other(pick.org);
        context.pick = pick;
        // Three ways a user might reach another org's run: its id under their own org, the
        // other org's path, and the other org's event stream.
        const form = ['own-org path', 'other-org path', 'other-org events'][pick.runId.charCodeAt(0) % 3]!;
        context.probe = { orgId: other.org.orgId, runId: other.runId, form };
        const path =
          form === 'own-org path'
            ? `/v1/orgs/${pick.org.orgId}/runs/${other.runId}`
            : form === 'other-org path'
              ? `/v1/orgs/${other.org.orgId}/runs/${other.runId}`
              : `/v1/orgs/${other.org.orgId}/runs/${other.runId}/events`;
        return { path, headers: bearer(pick.user.token) };
      },
      check(stats, status, body, context) {
        const probe = context.probe!;
        if (status === 404) return;
        if (status >= 500) {
          noteSample(stats, `${status} on ${probe.form}: ${body}`);
          return;
        }
        // 2xx is a leak; 403 confirms the id exists, which "another org's id answers 404" also
        // forbids.
        stats.crossOrg++;
        noteSample(stats, `user of org ${context.pick!.org.orgId} got ${status} for run ${probe.runId} of org ${probe.orgId} (${probe.form}): ${body}`);
      },
    },
  ];
}

async function runCannon(route: CannonRoute, stats: RouteStats, opts: LoadOptions, rate: number): Promise<void> {
  // autocannon caps connections at overallRate and waits for each answer before a connection
  // sends again: the rate holds while answers take under a second, and a slower route shows up
  // as req/s below its target (a closed loop: it never queues more than the stack can take).
  const connections = Math.max(1, rate);
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: opts.baseUrl,
        connections,
        overallRate: rate,
        duration: opts.durationSeconds,
        timeout: 10,
        requests: [
          {
            method: route.method,
            setupRequest: (req: autocannon.Request, context: Context) => ({ ...req, method: route.method, ...route.build(context) }),
            onResponse: (status: number, body: string, context: Context) => route.check(stats, status, body, context),
          },
        ],
      } as autocannon.Options,
      (err, done) => (err ? reject(err as Error) : resolve(done)),
    );
    instance.on('response', (_client, status, _bytes, responseTime) => recordAnswer(stats, status, responseTime));
  });
  stats.errors += result.errors;
}

/** Event streams opened at a steady rate; each counts once, at its response headers. */
async function runStreams(tenants: Tenants, stats: RouteStats, opts: LoadOptions, rate: number): Promise<void> {
  const open = new Set<Promise<void>>();
  const deadline = performance.now() + opts.durationSeconds * 1000;
  const interval = 1000 / rate;
  let next = performance.now();
  const one = async () => {
    const pick = tenants.next();
    const controller = new AbortController();
    const hold = setTimeout(() => controller.abort(), opts.streamHoldMs);
    const t0 = performance.now();
    try {
      const res = await fetch(new URL(`/v1/orgs/${pick.org.orgId}/runs/${pick.runId}/events`, opts.baseUrl), {
        headers: { ...bearer(pick.user.token), accept: 'text/event-stream' },
        signal: controller.signal,
      });
      recordAnswer(stats, res.status, performance.now() - t0);
      if (res.status !== 200) {
        expectStatus(stats, res.status, await res.text(), [200]);
        return;
      }
      if (!res.headers.get('content-type')?.startsWith('text/event-stream')) {
        stats.unexpected++;
        noteSample(stats, `200 without an event stream: ${await res.text()}`);
        return;
      }
      // Read until the first durable event of the run (or the hold time), then hang up, as a
      // console tab that is closed would.
      const reader = res.body!.getReader();
      let text = '';
      while (!/^id: \d+$/m.test(text)) {
        const chunk = await reader.read();
        if (chunk.done) break;
        text += Buffer.from(chunk.value).toString('utf8');
        const foreign = /"runId":"([0-9a-f-]{36})"/.exec(text)?.[1];
        if (foreign && foreign !== pick.runId) {
          stats.crossOrg++;
          noteSample(stats, `stream of run ${pick.runId} carried run ${foreign}`);
          break;
        }
      }
      controller.abort();
    } catch (err) {
      if (!controller.signal.aborted) {
        stats.errors++;
        noteSample(stats, `no answer: ${(err as Error).message}`);
      }
    } finally {
      clearTimeout(hold);
    }
  };
  while (performance.now() < deadline) {
    const p = one().finally(() => open.delete(p));
    open.add(p);
    next += interval;
    const wait = next - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
  await Promise.all(open);
}

export async function runLoad(provisioned: Provisioned, opts: LoadOptions): Promise<LoadReport> {
  const tenants = new Tenants(provisioned.orgs);
  const routes = cannonRoutes(tenants).filter((r) => r.key !== 'crmWebhook' || !provisioned.webhooksSkipped);
  const statsOf = new Map(Object.keys(ROUTE_WEIGHTS).map((key) => [key, newRouteStats(ROUTE_NAMES[key as keyof typeof ROUTE_WEIGHTS])]));
  const rateOf = (key: keyof typeof ROUTE_WEIGHTS) => Math.max(1, Math.round(opts.rate * ROUTE_WEIGHTS[key]));
  opts.log(`load: ${opts.rate} req/s over ${opts.durationSeconds} s (${Object.keys(ROUTE_WEIGHTS).map((k) => `${k} ${rateOf(k as keyof typeof ROUTE_WEIGHTS)}/s`).join(', ')})`);
  await Promise.all([
    ...routes.map((route) => runCannon(route, statsOf.get(route.key)!, opts, rateOf(route.key))),
    runStreams(tenants, statsOf.get('streamEvents')!, opts, rateOf('streamEvents')),
  ]);
  for (const key of Object.keys(ROUTE_WEIGHTS) as Array<keyof typeof ROUTE_WEIGHTS>) statsOf.get(key)!.targetPerSecond = rateOf(key);
  return {
    durationSeconds: opts.durationSeconds,
    routes: [...statsOf].filter(([key]) => key !== 'crmWebhook' || !provisioned.webhooksSkipped).map(([, stats]) => stats),
    skipped: provisioned.webhooksSkipped ? [{ route: ROUTE_NAMES.crmWebhook, reason: provisioned.webhooksSkipped }] : [],
  };
}
