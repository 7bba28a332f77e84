/**
 * `npm run dev`: the whole stack on one machine with a sandbox LLM and a demo organization.
 * Starts Temporal (with its UI), Postgres, the sandbox LLM, the sandbox Supabase Auth, the sandbox
 * CRM (the Kommo fake with a demo lead), the API (which serves the console) and a worker; seeds a
 * demo org, user and agent bound to the sandbox CRM; prints how to sign in, start a run and write
 * to the agent as the demo lead. Ctrl-C stops everything.
 *
 * Every real part can be swapped for an existing one with the same variables production uses:
 * TEMPORAL_ADDRESS, DATABASE_URL (a superuser URL here, used to migrate), LLM_BASE_URL/LLM_API_KEY,
 * SUPABASE_URL/SUPABASE_ANON_KEY (then SUPABASE_JWT_SECRET must be that project's secret).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import pg from 'pg';
import { startFakeLlm, type FakeLlmServer } from './stack/sandbox-llm.js';
import { customSearchAttributes } from '../workflows/search-attributes.js';
import { prepareAppDatabase } from './stack/app-database.js';
import { createDatabase, databaseNamedIn, startPostgres, type PostgresHandle } from './stack/postgres.js';
import { ensureTemporalCli } from './stack/temporal-cli.js';
import { startTemporalDevServer, type TemporalDevServer } from './stack/temporal-server.js';
import { waitForPort } from './stack/ports.js';
import { startSandboxAuth, type SandboxAuth } from './stack/sandbox-auth.js';
import { startSandboxCrm } from './stack/sandbox-crm.js';
import { bindSandboxCrm, sandboxWebhookUrl } from './stack/sandbox-crm-seed.js';
import { buildConsole } from './stack/console-build.js';
import { buildCodecServer } from '../api/codec-server.js';
import { createLogger } from '../lib/logger.js';
import { codecKeyringFrom } from '../lib/temporal-codec.js';
import { generateKeySpec, parseKeyring } from '../lib/crypto.js';
import { devSecretsFile } from './stack/dev-secrets.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const dataDir = path.join(root, '.data');
const smoke = process.argv.includes('--smoke');

const DEMO = {
  orgId: '00000000-0000-4000-8000-00000000d001',
  userId: '00000000-0000-4000-8000-00000000d002',
  agentId: '00000000-0000-4000-8000-00000000d003',
  connectionId: '00000000-0000-4000-8000-00000000d004',
  email: 'demo@example.com',
  // A local sandbox login, printed in the banner; never a credential of anything real.
  password: 'demo-sales-2026',
};
const API_PORT = Number(process.env.API_PORT ?? 3000);
const TEMPORAL_PORT = 7233;
const TEMPORAL_UI_PORT = 8233;
const CODEC_SERVER_PORT = Number(process.env.CODEC_SERVER_PORT ?? 8234);
const SANDBOX_CRM_PORT = Number(process.env.SANDBOX_CRM_PORT ?? 8235);
// The demo agent waits this long after the lead's last message, so a burst gets one reply.
const DEMO_RESPONSE_DELAY_SECONDS = 3;

const log = (msg: string) => console.log(`[dev] ${msg}`);
const cleanups: Array<() => Promise<void>> = [];
const children: ChildProcess[] = [];

/** Dev-only secrets persist in .data so tokens and logins survive restarts; never used elsewhere. */
interface DevSecrets {
  jwtSecret: string;
  codecKeys: string;
  codecToken: string;
  /** CRM credentials at rest (ENCRYPTION_KEYS) and the sandbox CRM's token and webhook URL secret. */
  crmKeys: string;
  sandboxCrmToken: string;
  sandboxWebhookSecret: string;
}

async function devSecrets(): Promise<DevSecrets> {
  const file = devSecretsFile();
  let secrets: Partial<DevSecrets> = {};
  try {
    secrets = JSON.parse(await readFile(file, 'utf8')) as typeof secrets;
  } catch {
    // first start
  }
  // The Temporal payload keyring persists too: the dev server's SQLite history stays readable.
  const complete = {
    jwtSecret: secrets.jwtSecret ?? randomBytes(32).toString('base64url'),
    codecKeys: secrets.codecKeys ?? `dev-1:${randomBytes(32).toString('base64')}`,
    codecToken: secrets.codecToken ?? randomBytes(32).toString('base64url'),
    crmKeys: secrets.crmKeys ?? generateKeySpec('dev-crm-1'),
    sandboxCrmToken: secrets.sandboxCrmToken ?? `sandbox-${randomBytes(24).toString('base64url')}`,
    sandboxWebhookSecret: secrets.sandboxWebhookSecret ?? randomBytes(24).toString('base64url'),
  };
  if (JSON.stringify(complete) !== JSON.stringify(secrets)) await writeFile(file, JSON.stringify(complete, null, 2), { mode: 0o600 });
  return complete;
}

async function seedDemo(adminUrl: string): Promise<void> {
  // Operator tooling: seeds run as the database owner, never through a request path.
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query('begin');
    await client.query(`insert into public.organizations (id, name) values ($1, 'Demo Sales Team') on conflict (id) do nothing`, [DEMO.orgId]);
    await client.query(
      // The seed is no sign-in, so it records the demo user's email itself (the console shows it);
      // a demo org seeded before the column existed gets it too.
      `insert into public.organization_members (org_id, user_id, role, email) values ($1, $2, 'owner', $3)
       on conflict (org_id, user_id) do update set email = excluded.email where organization_members.email is null`,
      [DEMO.orgId, DEMO.userId, DEMO.email],
    );
    await client.query(
      `insert into public.agents (id, org_id, name, model, instructions, temperature, max_output_tokens)
       values ($1, $2, 'Demo SDR', 'openai/gpt-4o-mini', 'You are a friendly sales development representative. Answer briefly.', 0.3, 512)
       on conflict (id) do nothing`,
      [DEMO.agentId, DEMO.orgId],
    );
    await client.query('commit');
  } finally {
    await client.end();
  }
}

function startChild(name: string, script: string, env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, script)], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const prefix = (chunk: Buffer) =>
    chunk
      .toString()
      .split('\n')
      .filter(Boolean)
      .forEach((line) => console.log(`[${name}] ${line}`));
  child.stdout?.on('data', prefix);
  child.stderr?.on('data', prefix);
  child.on('exit', (code, signal) => {
    if (!stopping) {
      log(`${name} exited (${signal ?? code}); stopping the stack`);
      void stop(1);
    }
  });
  children.push(child);
  return child;
}

let stopping = false;
async function stop(code = 0): Promise<never> {
  if (!stopping) {
    stopping = true;
    log('stopping…');
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
            setTimeout(() => child.kill('SIGKILL'), 15_000).unref();
          }),
      ),
    );
    for (const cleanup of cleanups.reverse()) await cleanup().catch((err: unknown) => log(`cleanup failed: ${String(err)}`));
    log('stopped');
  }
  process.exit(code);
}

async function waitForReady(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not become ready within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

async function main(): Promise<void> {
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  await mkdir(dataDir, { recursive: true });

  // Payload encryption: histories hold ciphertext; the UI decrypts through the codec server,
  // whose URL carries the operator token because the dev UI has no login to send a header with.
  const secrets = await devSecrets();
  const codecKeys = process.env.TEMPORAL_CODEC_KEYS ?? secrets.codecKeys;
  const codecServer = await buildCodecServer({
    keyring: codecKeyringFrom({ TEMPORAL_CODEC_KEYS: codecKeys, TEMPORAL_CODEC_ACTIVE_KEY_ID: process.env.TEMPORAL_CODEC_ACTIVE_KEY_ID })!,
    tokens: [secrets.codecToken],
    corsOrigins: [`http://127.0.0.1:${TEMPORAL_UI_PORT}`, `http://localhost:${TEMPORAL_UI_PORT}`],
    logger: createLogger({ name: 'codec-server', level: 'warn' }),
  });
  await codecServer.listen({ host: '127.0.0.1', port: CODEC_SERVER_PORT });
  cleanups.push(() => codecServer.close());
  const codecEndpoint = `http://127.0.0.1:${CODEC_SERVER_PORT}/${secrets.codecToken}`;

  // Temporal
  let temporalAddress = process.env.TEMPORAL_ADDRESS;
  let temporalUi = process.env.TEMPORAL_UI_URL;
  if (!temporalAddress) {
    const cliPath = await ensureTemporalCli(log);
    await mkdir(path.join(dataDir, 'temporal'), { recursive: true });
    const server: TemporalDevServer = await startTemporalDevServer({
      cliPath,
      port: TEMPORAL_PORT,
      ui: true,
      uiPort: TEMPORAL_UI_PORT,
      dbFilename: path.join(dataDir, 'temporal', 'dev.db'),
      searchAttributes: customSearchAttributes,
      extraArgs: ['--ui-codec-endpoint', codecEndpoint],
    });
    cleanups.push(() => server.stop());
    temporalAddress = server.address;
    temporalUi = server.uiUrl;
    log(`Temporal dev server on ${temporalAddress}`);
  }

  // Postgres
  const postgres: PostgresHandle = await startPostgres({ dataDir: path.join(dataDir, 'postgres'), log });
  cleanups.push(() => postgres.stop());
  // DATABASE_URL naming a database means that database; otherwise ours on that server (or embedded).
  const named = postgres.embedded ? undefined : databaseNamedIn(postgres.adminUrl);
  const adminUrl = named ? postgres.adminUrl : await createDatabase(postgres.adminUrl, 'gpt_agent_platform', { dropIfExists: false });
  log(`database ${named ?? 'gpt_agent_platform'}`);
  const { appUrl } = await prepareAppDatabase(adminUrl, log);
  await seedDemo(adminUrl);

  // LLM: the sandbox unless a real endpoint is configured.
  let llmBaseUrl = process.env.LLM_BASE_URL;
  let sandbox: FakeLlmServer | undefined;
  if (!llmBaseUrl) {
    sandbox = await startFakeLlm();
    cleanups.push(() => sandbox!.close());
    llmBaseUrl = sandbox.url;
    log(`sandbox LLM (a local fake, not a real model) on ${llmBaseUrl}`);
  }

  const jwtSecret = process.env.SUPABASE_JWT_SECRET ?? secrets.jwtSecret;

  // CRM: the sandbox (the Kommo fake with a demo lead) and the demo agent bound to it. Its webhooks
  // go to the API like Kommo's would, with the connection's URL secret.
  const crmKeys = process.env.ENCRYPTION_KEYS ?? secrets.crmKeys;
  const apiUrl = `http://127.0.0.1:${API_PORT}`;
  const webhookUrl = sandboxWebhookUrl(apiUrl, { connectionId: DEMO.connectionId, webhookSecret: secrets.sandboxWebhookSecret });
  const sandboxCrm = await startSandboxCrm({ port: SANDBOX_CRM_PORT, accessToken: secrets.sandboxCrmToken, webhookUrl, log: (msg) => log(`sandbox CRM: ${msg}`) });
  cleanups.push(() => sandboxCrm.close());
  const seedPool = new pg.Pool({ connectionString: adminUrl, max: 1 });
  try {
    await bindSandboxCrm(seedPool, {
      orgId: DEMO.orgId,
      agentId: DEMO.agentId,
      connectionId: DEMO.connectionId,
      sandboxUrl: sandboxCrm.url,
      accessToken: secrets.sandboxCrmToken,
      webhookSecret: secrets.sandboxWebhookSecret,
      keyring: parseKeyring(crmKeys, process.env.ENCRYPTION_ACTIVE_KEY_ID),
      responseDelaySeconds: DEMO_RESPONSE_DELAY_SECONDS,
    });
  } finally {
    await seedPool.end();
  }
  log(`sandbox CRM (a local Kommo fake, not Kommo) on ${sandboxCrm.url}`);

  // Identity: Supabase Auth cannot run here; the sandbox speaks its HTTP API and knows the demo user.
  let supabaseUrl = process.env.SUPABASE_URL;
  let supabaseAnonKey = process.env.SUPABASE_ANON_KEY;
  let sandboxAuth: SandboxAuth | undefined;
  if (!supabaseUrl) {
    sandboxAuth = await startSandboxAuth({
      jwtSecret,
      port: Number(process.env.SANDBOX_AUTH_PORT ?? 9999),
      users: [{ id: DEMO.userId, email: DEMO.email, password: DEMO.password }],
      stateFile: path.join(dataDir, 'sandbox-auth-users.json'),
      // Links and OAuth come back to the console; the stand-in GitHub suggests the demo user.
      siteUrl: `${apiUrl}/`,
      oauthProviders: { github: { email: DEMO.email } },
    });
    cleanups.push(() => sandboxAuth!.close());
    supabaseUrl = sandboxAuth.url;
    supabaseAnonKey = sandboxAuth.anonKey;
    log(`sandbox Supabase Auth (a local stand-in, not Supabase) on ${supabaseUrl}`);
  }
  const common = {
    APP_ENV: 'development',
    DATABASE_URL: appUrl,
    TEMPORAL_ADDRESS: temporalAddress,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
    TEMPORAL_CODEC_KEYS: codecKeys,
    ENCRYPTION_KEYS: crmKeys,
    // The sandbox CRM listens on loopback, which the SSRF guard refuses to anyone else.
    SSRF_ALLOWED_HOSTS: process.env.SSRF_ALLOWED_HOSTS ?? '127.0.0.1',
  };
  startChild('worker', 'workers/main.ts', { ...common, LLM_BASE_URL: llmBaseUrl });
  // The API reads the built console once, when it starts: build it first (skipped when current).
  try {
    buildConsole(log);
  } catch (err) {
    log(`the console could not be built, the API serves the rest: ${String(err)}`);
  }
  startChild('api', 'api/main.ts', {
    ...common,
    API_PORT: String(API_PORT),
    SUPABASE_JWT_SECRET: jwtSecret,
    SUPABASE_URL: supabaseUrl,
    ...(supabaseAnonKey ? { SUPABASE_ANON_KEY: supabaseAnonKey } : {}),
    ...(temporalUi ? { TEMPORAL_UI_URL: temporalUi } : {}),
  });
  await waitForPort('127.0.0.1', API_PORT, 60_000);
  await waitForReady(`${apiUrl}/readyz`, 60_000);

  const token = await new SignJWT({ email: DEMO.email, role: 'authenticated' })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(DEMO.userId)
    .setAudience('authenticated')
    .setIssuedAt()
    .setExpirationTime('12h')
    .sign(new TextEncoder().encode(jwtSecret));

  const startUrl = `${apiUrl}/v1/orgs/${DEMO.orgId}/agents/${DEMO.agentId}/runs`;
  const consoleBuilt = existsSync(path.join(root, 'web', 'dist', 'index.html'));
  console.log(`
──────────────────────────────────────────────────────────────────────────────
 gpt-agent-platform is running (sandbox LLM: ${sandbox ? 'yes, answers are canned' : 'no, ' + llmBaseUrl})

 API           ${apiUrl}
 Console       ${apiUrl}/${consoleBuilt ? '' : '   (not built: npm run build:console)'}
 Demo login    ${sandboxAuth ? `${DEMO.email} / ${DEMO.password}` : `(your Supabase project at ${supabaseUrl})`}
${sandboxAuth ? ` Mailbox       ${sandboxAuth.url}/sandbox/mailbox   (sign-in links the sandbox auth "sent")\n` : ''} Temporal UI   ${temporalUi ?? '(external Temporal: ' + temporalAddress + ')'}
 Demo org      ${DEMO.orgId}
 Demo agent    ${DEMO.agentId}
 Sandbox CRM   ${sandboxCrm.url}
 Demo lead     ${sandboxCrm.demoLeadId}
 Demo token    (user ${DEMO.email}, valid 12 h)
${token}

 Start a run:
   curl -sS -X POST ${startUrl} \\
     -H "Authorization: Bearer ${token}" \\
     -H 'Content-Type: application/json' \\
     -d '{"input":"Draft a two-line follow-up for a lead who asked about pricing."}'

 Then read it (use the "id" from the answer):
   curl -sS ${apiUrl}/v1/orgs/${DEMO.orgId}/runs/<id> -H "Authorization: Bearer ${token}"

 Write to the agent as the demo lead (it answers in the lead's chat after ${DEMO_RESPONSE_DELAY_SECONDS} s):
   curl -sS -X POST ${sandboxCrm.url}/sandbox/leads/${sandboxCrm.demoLeadId}/messages \\
     -H 'Content-Type: application/json' -d '{"text":"Hi! Do you ship to Berlin?"}'
   curl -sS ${sandboxCrm.url}/sandbox/leads/${sandboxCrm.demoLeadId}/messages

 In the Temporal UI, filter with:  OrgId = "${DEMO.orgId}"
 Ctrl-C stops everything.
──────────────────────────────────────────────────────────────────────────────
`);

  if (smoke) {
    // `npm run dev -- --smoke`: start one run through the API, wait for it, stop.
    const res = await fetch(startUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ input: 'Smoke test: say hello.' }),
    });
    const started = (await res.json()) as { id: string };
    if (res.status !== 201) throw new Error(`start answered ${res.status}: ${JSON.stringify(started)}`);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const run = (await (await fetch(`${apiUrl}/v1/orgs/${DEMO.orgId}/runs/${started.id}`, { headers: { authorization: `Bearer ${token}` } })).json()) as { status: string; output: string | null };
      if (run.status === 'completed') {
        log(`smoke run ${started.id} completed: ${run.output}`);
        break;
      }
      if (run.status === 'failed' || Date.now() > deadline) throw new Error(`smoke run ended ${run.status}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    // And the sandbox CRM: the demo lead writes, the agent answers in the lead's thread.
    const thread = `${sandboxCrm.url}/sandbox/leads/${sandboxCrm.demoLeadId}/messages`;
    const before = ((await (await fetch(thread)).json()) as unknown[]).length;
    const wrote = await fetch(thread, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: 'Smoke test: hello from the demo lead.' }) });
    if (wrote.status !== 201) throw new Error(`the sandbox CRM answered ${wrote.status}: ${await wrote.text()}`);
    const replyDeadline = Date.now() + 60_000;
    for (;;) {
      const messages = (await (await fetch(thread)).json()) as Array<{ author: string; text: string }>;
      const reply = messages.slice(before).find((m) => m.author === 'agent');
      if (reply) {
        log(`smoke: the agent answered the demo lead in the sandbox CRM: ${reply.text}`);
        break;
      }
      if (Date.now() > replyDeadline) throw new Error('smoke: no agent reply in the sandbox CRM thread within 60 s');
      await new Promise((r) => setTimeout(r, 250));
    }
    await stop(0);
  }
}

main().catch(async (err: unknown) => {
  console.error(err);
  await stop(1);
});
