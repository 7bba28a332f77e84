/**
 * RLS benchmark (prints, never asserts): list queries over 100k agent runs per org for 10 orgs,
 * as an authenticated member (through the application's login role, policies applied) versus
 * service_role (bypassrls, through the superuser connection), and the plan of the member's
 * query: the org_id index must be used and the policy's auth helpers must run once (InitPlan),
 * not once per row. BENCH_ROUNDS rounds (default 5); in each, every query is timed as member
 * and as service_role alternately, call by call, and the ratio of their medians is per round.
 *
 *   npm run bench:rls                  embedded Postgres
 *   BENCH_ROWS_PER_ORG=20000 npm run bench:rls
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { createPool, withPrincipal, withServiceRole, type Tx } from '../lib/db.js';
import type { Principal } from '../lib/principal.js';
import { prepareAppDatabase } from '../scripts/stack/app-database.js';
import { createDatabase, dropDatabase, startPostgres, type PostgresHandle } from '../scripts/stack/postgres.js';
import { FigureLog, ROUNDS, summarize } from './support/figures.js';

const ORGS = 10;
const ROWS_PER_ORG = Number(process.env.BENCH_ROWS_PER_ORG ?? 100_000);
const GOAL_RATIO = 1.5;
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const log = (msg: string) => console.log(`[bench:rls] ${msg}`);

interface Query {
  id: string;
  name: string;
  sql: string;
  iterations: number;
}

const queries: Query[] = [
  {
    id: 'list',
    name: 'list page (50 newest runs of the org)',
    sql: `select id, agent_id, status, created_at from public.agent_runs where org_id = $1 order by created_at desc limit 50`,
    iterations: 300,
  },
  {
    id: 'by-status',
    name: 'list page by status (50 newest completed)',
    sql: `select id, agent_id, status, created_at from public.agent_runs where org_id = $1 and status = 'completed' order by created_at desc limit 50`,
    iterations: 300,
  },
  {
    id: 'keyset',
    name: 'keyset page deep in the list (after 90k rows)',
    sql: `select id, status, created_at from public.agent_runs
          where org_id = $1 and created_at < now() - interval '90000 seconds' order by created_at desc limit 50`,
    iterations: 300,
  },
  {
    id: 'count',
    name: 'count of the org runs (touches every row of the org)',
    sql: `select count(*) from public.agent_runs where org_id = $1`,
    iterations: 40,
  },
];

async function seed(admin: pg.Pool): Promise<{ orgId: string; memberId: string }[]> {
  const orgs: { orgId: string; memberId: string }[] = [];
  for (let i = 0; i < ORGS; i++) {
    const orgId = randomUUID();
    const memberId = randomUUID();
    await admin.query(`insert into public.organizations (id, name) values ($1, $2)`, [orgId, `bench org ${i}`]);
    await admin.query(`insert into public.organization_members (org_id, user_id, role) values ($1, $2, 'member')`, [orgId, memberId]);
    const { rows } = await admin.query<{ id: string }>(`insert into public.agents (org_id, name, model) values ($1, 'bench', 'm') returning id`, [orgId]);
    await admin.query(
      `insert into public.agent_runs (org_id, agent_id, input, status, created_at)
       select $1, $2, 'bench input', (array['completed', 'failed', 'running', 'queued'])[1 + g % 4], now() - make_interval(secs => g)
       from generate_series(1, $3::int) g`,
      [orgId, rows[0]!.id, ROWS_PER_ORG],
    );
    orgs.push({ orgId, memberId });
    log(`seeded org ${i + 1}/${ORGS} (${ROWS_PER_ORG} runs)`);
  }
  await admin.query('vacuum analyze public.agent_runs');
  await admin.query('analyze public.organization_members');
  return orgs;
}

/**
 * Times `a` and `b` alternately, one call each per iteration (which goes first alternates too),
 * so both sides see the same moments of a shared machine's load; the median and p95 of each.
 */
async function timePair(iterations: number, a: () => Promise<unknown>, b: () => Promise<unknown>): Promise<[Timing, Timing]> {
  for (let i = 0; i < Math.min(10, iterations); i++) {
    await a(); // warm caches and plans
    await b();
  }
  const samples: [number[], number[]] = [[], []];
  const once = async (fn: () => Promise<unknown>, into: number[]) => {
    const start = process.hrtime.bigint();
    await fn();
    into.push(Number(process.hrtime.bigint() - start) / 1e6);
  };
  for (let i = 0; i < iterations; i++) {
    if (i % 2 === 0) {
      await once(a, samples[0]);
      await once(b, samples[1]);
    } else {
      await once(b, samples[1]);
      await once(a, samples[0]);
    }
  }
  const stats = (values: number[]): Timing => {
    values.sort((x, y) => x - y);
    return { medianMs: values[Math.floor(values.length / 2)]!, p95Ms: values[Math.floor(values.length * 0.95)]! };
  };
  return [stats(samples[0]), stats(samples[1])];
}

interface Timing {
  medianMs: number;
  p95Ms: number;
}

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Relation Name'?: string;
  'Parent Relationship'?: string;
  'Subplan Name'?: string;
  'Actual Loops'?: number;
  Plans?: PlanNode[];
}

function walk(node: PlanNode, visit: (node: PlanNode) => void): void {
  visit(node);
  for (const child of node.Plans ?? []) walk(child, visit);
}

/**
 * The policy's `org_id in (select private.org_ids_for(...))` must become a subplan evaluated once
 * per statement (an InitPlan, or a hashed SubPlan built once and probed per row), never a
 * subplan re-run for each row; and agent_runs must be reached through an index leading with org_id.
 */
async function explain(tx: Tx, sql: string, orgId: string): Promise<{ text: string; usesOrgIndex: boolean; helpersOnce: boolean; subplans: string[] }> {
  const { rows: json } = await tx.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(`explain (analyze, format json) ${sql}`, [orgId]);
  const { rows: text } = await tx.query<{ 'QUERY PLAN': string }>(`explain (analyze, costs off, timing off, summary off) ${sql}`, [orgId]);
  const plan = json[0]!['QUERY PLAN'][0].Plan;
  let usesOrgIndex = false;
  let seqScan = false;
  const subplans: string[] = [];
  let helpersOnce = true;
  walk(plan, (node) => {
    if (node['Relation Name'] === 'agent_runs' && /^agent_runs_org_id/.test(node['Index Name'] ?? '')) usesOrgIndex = true;
    if (node['Relation Name'] === 'agent_runs' && node['Node Type'] === 'Seq Scan') seqScan = true;
    const relationship = node['Parent Relationship'];
    if (relationship === 'SubPlan' || relationship === 'InitPlan') {
      const loops = node['Actual Loops'] ?? 0;
      subplans.push(`${node['Subplan Name'] ?? relationship}: loops=${loops}`);
      if (loops > 1) helpersOnce = false;
    }
  });
  if (subplans.length === 0) helpersOnce = false;
  return { text: text.map((r) => r['QUERY PLAN']).join('\n'), usesOrgIndex: usesOrgIndex && !seqScan, helpersOnce, subplans };
}

async function main(): Promise<void> {
  let postgres: PostgresHandle | undefined;
  const databaseName = `gap_bench_${process.pid}_${Date.now()}`;
  let adminUrl: string | undefined;
  let admin: pg.Pool | undefined;
  let app: pg.Pool | undefined;
  try {
    postgres = await startPostgres({ dataDir: path.join(repoRoot, '.data', 'bench-postgres'), port: 0, log });
    adminUrl = await createDatabase(postgres.adminUrl, databaseName, { dropIfExists: true });
    const { appUrl } = await prepareAppDatabase(adminUrl, log);
    admin = createPool(adminUrl, { max: 2, applicationName: 'bench-admin' });
    app = createPool(appUrl, { max: 2, applicationName: 'bench-app' });

    const started = Date.now();
    const orgs = await seed(admin);
    log(`seeded ${ORGS * ROWS_PER_ORG} runs in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    const target = orgs[Math.floor(ORGS / 2)]!;
    const principal: Principal = { kind: 'user', userId: target.memberId };
    const appPool = app;
    const adminPool = admin;
    const figures = new FigureLog('rls');
    const series = queries.map((query) => ({
      query,
      member: figures.add(`${query.id}.member`, `${query.name}: member (RLS)`, 'ms'),
      service: figures.add(`${query.id}.service`, `${query.name}: service_role`, 'ms'),
    }));
    for (const query of queries) {
      figures.ratio(`${query.id}.ratio`, `${query.name}: member / service_role`, `${query.id}.member`, `${query.id}.service`, { op: '<=', value: GOAL_RATIO });
    }
    const asMember = (sql: string) => () => withPrincipal(appPool, principal, (tx) => tx.query(sql, [target.orgId]));
    const asService = (sql: string) => () => withServiceRole(adminPool, (tx) => tx.query(sql, [target.orgId]));
    for (let round = 1; round <= ROUNDS; round++) {
      for (const { query, member: m, service } of series) {
        const [mt, st] = await timePair(query.iterations, asMember(query.sql), asService(query.sql));
        m.sample(mt.medianMs);
        service.sample(st.medianMs);
        log(`round ${round}: ${query.name}: member ${mt.medianMs.toFixed(3)} ms (p95 ${mt.p95Ms.toFixed(3)}), service_role ${st.medianMs.toFixed(3)} ms (p95 ${st.p95Ms.toFixed(3)}), ratio ${(mt.medianMs / st.medianMs).toFixed(2)}`);
      }
    }

    let allPlansGood = true;
    const all = figures.all();
    for (const query of queries) {
      const plan = await withPrincipal(appPool, principal, (tx) => explain(tx, query.sql, target.orgId));
      allPlansGood &&= plan.usesOrgIndex && plan.helpersOnce;
      const ratio = summarize(all.find((f) => f.id === `${query.id}.ratio`)!.samples).median;
      console.log(`\n== ${query.name}`);
      console.log(`   ratio (median of ${ROUNDS} rounds): ${ratio.toFixed(2)}x (goal <= ${GOAL_RATIO}x) ${ratio <= GOAL_RATIO ? 'OK' : 'OVER GOAL'}`);
      console.log(`   org_id index:  ${plan.usesOrgIndex ? 'used' : 'NOT USED'}`);
      console.log(`   auth helpers:  ${plan.helpersOnce ? 'evaluated once' : 'NOT ONCE'} (${plan.subplans.join('; ') || 'no subplan found'})`);
      console.log(plan.text.replace(/^/gm, '     | '));
    }
    const allWithinGoal = all.filter((f) => f.ratioOf).every((f) => summarize(f.samples).median <= GOAL_RATIO);
    figures.finish();
    console.log(`\nsummary: ratio goal ${allWithinGoal ? 'met' : 'NOT met'} for every query; plans ${allPlansGood ? 'use the org_id index with helpers evaluated once' : 'need attention'}`);
  } finally {
    await app?.end();
    await admin?.end();
    if (postgres && adminUrl) await dropDatabase(postgres.adminUrl, databaseName).catch((err: unknown) => log(`could not drop ${databaseName}: ${String(err)}`));
    await postgres?.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
