/**
 * `npm run loadtest`: many orgs and users against a running stack (the dev stack, staging):
 * starting runs, reading and listing them, streaming their events, CRM webhooks, and every
 * user probing other orgs' run ids. Prints throughput and p50/p95/p99 per route, and exits
 * non-zero on any 5xx, any cross-org answer, or an error rate over the threshold.
 *
 * Exit codes: 0 passed, 1 failed (the verdict says why), 2 could not run (usage, provisioning).
 * Every flag has an environment variable, so CI passes secrets through the environment only.
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { runLoad } from './load.js';
import { cleanUp, provision, ProvisionError } from './provision.js';
import { formatReport, judge, reportJson } from './report.js';

const usage = `npm run loadtest -- [options]

  --url URL              the API (LOADTEST_URL; default http://127.0.0.1:3000)
  --jwt-secret SECRET    HS256 secret the API verifies user tokens with (LOADTEST_JWT_SECRET;
                         the dev stack's is in .data/dev-secrets.json, found by itself)
  --jwt-issuer ISS       iss claim, when the API checks SUPABASE_JWT_ISSUER (LOADTEST_JWT_ISSUER)
  --orgs N               orgs (LOADTEST_ORGS; default 10)
  --users N              users per org, the first founds it, the others accept invites (LOADTEST_USERS; default 3)
  --duration S           seconds of load (LOADTEST_DURATION; default 60)
  --rate R               requests per second over all routes (LOADTEST_RATE; default 50)
  --max-error-rate F     failed share of requests that fails the test (LOADTEST_MAX_ERROR_RATE; default 0.01)
  --webhooks MODE        auto | on | off: CRM webhooks (need CRM on the server; auto skips them
                         with a note when the server has no CRM routes) (LOADTEST_WEBHOOKS; default auto)
  --kommo-account-url U  account address of the load test's Kommo connections (LOADTEST_KOMMO_ACCOUNT_URL;
                         default https://loadtest.kommo.com; never called: the webhooks need no CRM read)
  --agent-model M        model of the load test's agents (LOADTEST_AGENT_MODEL; default loadtest/sandbox;
                         runs a worker picks up call the stack's LLM with it)
  --stream-hold-ms MS    longest an event stream stays open (LOADTEST_STREAM_HOLD_MS; default 2000)
  --json FILE            also write the report as JSON
  --keep                 keep the orgs it created (default: the owners delete them at the end)
`;

async function devJwtSecret(): Promise<string | undefined> {
  try {
    const { readFile } = await import('node:fs/promises');
    const secrets = JSON.parse(await readFile(new URL('../../.data/dev-secrets.json', import.meta.url), 'utf8')) as { jwtSecret?: string };
    return secrets.jwtSecret;
  } catch {
    return undefined;
  }
}

function number(name: string, raw: string | undefined, fallback: number, check: (n: number) => boolean): number {
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || !check(n)) throw new UsageError(`--${name} must be a valid number, got ${raw}`);
  return n;
}

class UsageError extends Error {}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      'jwt-secret': { type: 'string' },
      'jwt-issuer': { type: 'string' },
      orgs: { type: 'string' },
      users: { type: 'string' },
      duration: { type: 'string' },
      rate: { type: 'string' },
      'max-error-rate': { type: 'string' },
      webhooks: { type: 'string' },
      'kommo-account-url': { type: 'string' },
      'agent-model': { type: 'string' },
      'stream-hold-ms': { type: 'string' },
      json: { type: 'string' },
      keep: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const env = process.env;
  const log = (msg: string) => console.log(`[loadtest] ${msg}`);
  const baseUrl = values.url ?? env.LOADTEST_URL ?? 'http://127.0.0.1:3000';
  const jwtSecret = values['jwt-secret'] ?? env.LOADTEST_JWT_SECRET ?? (await devJwtSecret());
  if (!jwtSecret) throw new UsageError('no JWT secret: pass --jwt-secret or LOADTEST_JWT_SECRET (the secret the API verifies user tokens with)');
  const webhooks = values.webhooks ?? env.LOADTEST_WEBHOOKS ?? 'auto';
  if (webhooks !== 'auto' && webhooks !== 'on' && webhooks !== 'off') throw new UsageError(`--webhooks must be auto, on or off, got ${webhooks}`);
  const orgs = number('orgs', values.orgs ?? env.LOADTEST_ORGS, 10, (n) => Number.isInteger(n) && n >= 2);
  const usersPerOrg = number('users', values.users ?? env.LOADTEST_USERS, 3, (n) => Number.isInteger(n) && n >= 1);
  const durationSeconds = number('duration', values.duration ?? env.LOADTEST_DURATION, 60, (n) => Number.isInteger(n) && n >= 1);
  const rate = number('rate', values.rate ?? env.LOADTEST_RATE, 50, (n) => n >= 1);
  const maxErrorRate = number('max-error-rate', values['max-error-rate'] ?? env.LOADTEST_MAX_ERROR_RATE, 0.01, (n) => n >= 0 && n <= 1);
  const streamHoldMs = number('stream-hold-ms', values['stream-hold-ms'] ?? env.LOADTEST_STREAM_HOLD_MS, 2000, (n) => n >= 100);

  const label = `loadtest-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  log(`target ${baseUrl}; ${orgs} orgs × ${usersPerOrg} users; label ${label}`);
  const provisioned = await provision({
    baseUrl,
    jwtSecret,
    jwtIssuer: values['jwt-issuer'] ?? env.LOADTEST_JWT_ISSUER,
    orgs,
    usersPerOrg,
    seedRuns: 2,
    agentModel: values['agent-model'] ?? env.LOADTEST_AGENT_MODEL ?? 'loadtest/sandbox',
    webhooks,
    kommoAccountUrl: values['kommo-account-url'] ?? env.LOADTEST_KOMMO_ACCOUNT_URL ?? 'https://loadtest.kommo.com',
    label,
    log,
  });
  try {
    const report = await runLoad(provisioned, { baseUrl, durationSeconds, rate, streamHoldMs, log });
    const verdict = judge(report, maxErrorRate);
    console.log(formatReport(report, verdict));
    if (values.json) await writeFile(values.json, `${JSON.stringify(reportJson(report, verdict), null, 2)}\n`);
    return verdict.ok ? 0 : 1;
  } finally {
    if (!values.keep) await cleanUp(baseUrl, provisioned.orgs, log);
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    const known = err instanceof UsageError || err instanceof ProvisionError;
    console.error(`[loadtest] ${known ? (err as Error).message : (err as Error).stack}`);
    if (err instanceof UsageError) console.error(usage);
    process.exit(2);
  },
);
