import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { DEFAULT_SPEND_SETTINGS, type SpendSettings } from './spend.js';

/**
 * Configuration comes only from the environment and is validated once at start-up, so a
 * misconfigured process refuses to start with a list of every problem instead of failing
 * on the first request that needs the missing value.
 */

const environment = z.enum(['development', 'test', 'production']);

const port = z.coerce.number().int().min(0).max(65535);
const positiveMs = z.coerce.number().int().positive();

/**
 * A certificate or key for the Temporal connection: the PEM text itself (a secret injected as an
 * environment variable) or the path of a file holding it (a mounted secret). Read once, here, so
 * a missing file or a non-PEM value stops the process at start-up with the variable's name.
 */
const pem = (what: string) =>
  z.string().transform((value, ctx) => {
    const text = value.trimStart().startsWith('-----BEGIN') ? value : readPemFile(value, ctx);
    if (text !== undefined && !text.includes('-----BEGIN')) {
      ctx.addIssue({ code: 'custom', message: `must be ${what} in PEM form (-----BEGIN …) or the path of a file holding it` });
      return z.NEVER;
    }
    return text ?? z.NEVER;
  });

function readPemFile(path: string, ctx: z.RefinementCtx): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
    return undefined;
  }
}

const flag = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

/**
 * How every process reaches Temporal (lib/temporal.ts `temporalConnectionOptions`): a plaintext
 * dev server, a TLS or mTLS cluster, or Temporal Cloud (mTLS or an API key).
 */
const temporalConnectionShape = {
  TEMPORAL_ADDRESS: z.string().min(1).default('127.0.0.1:7233'),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  /** TLS on (`true`) with the system's trusted CAs; implied by any of the variables below. */
  TEMPORAL_TLS: flag.optional(),
  /** The CA that signed the server's certificate, when it is not publicly trusted. */
  TEMPORAL_TLS_CA: pem('a CA certificate').optional(),
  /** Client certificate and key for mutual TLS; both or neither. */
  TEMPORAL_TLS_CERT: pem('a client certificate').optional(),
  TEMPORAL_TLS_KEY: pem('a private key').optional(),
  /** The name to verify in the server's certificate when it differs from TEMPORAL_ADDRESS's host. */
  TEMPORAL_TLS_SERVER_NAME: z.string().min(1).optional(),
  /** Temporal Cloud API key (sent as a bearer token; implies TLS). */
  TEMPORAL_API_KEY: z.string().min(1).optional(),
};

const baseSchema = z.object({
  APP_ENV: environment.default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DATABASE_URL: z.string().url({ message: 'must be a postgres:// URL of the application role (authenticator)' }),
  DATABASE_POOL_MAX: z.coerce.number().int().min(1).max(200).default(10),
  DATABASE_POOL_IDLE_SECONDS: z.coerce.number().int().min(1).max(3600).default(300),
  // node-postgres' pipeline mode and named prepared statements (lib/db.ts, PoolOptions).
  DATABASE_PIPELINE: flag.default(true),
  DATABASE_PREPARED_STATEMENTS: flag.default(true),
  ...temporalConnectionShape,
  // Payload encryption (lib/temporal-codec.ts): `kid:base64key,…`, 32-byte keys; the active key
  // encrypts (default: the last listed), every listed key decrypts. Required in production.
  TEMPORAL_CODEC_KEYS: z.string().min(1).optional(),
  TEMPORAL_CODEC_ACTIVE_KEY_ID: z.string().min(1).optional(),
  // Our own Prometheus metrics (lib/metrics.ts) on a listener of their own, never the public port.
  METRICS_HOST: z.string().min(1).default('127.0.0.1'),
  METRICS_PORT: port.optional(),
  SENTRY_DSN: z.string().url().optional(),
  SENTRY_ENVIRONMENT: z.string().min(1).optional(),
  SENTRY_RELEASE: z.string().min(1).optional(),
  // Secrets at rest (lib/crypto.ts): `kid:base64key,…` (32-byte keys); the active key encrypts
  // (default: the last listed), every listed key decrypts. Required wherever CRM credentials are used.
  ENCRYPTION_KEYS: z.string().min(1).optional(),
  ENCRYPTION_ACTIVE_KEY_ID: z.string().min(1).optional(),
  /** JSON `{ "<model or prefix*>": { "inputPerMillion": n, "outputPerMillion": n } }` merged over the built-in prices (USD). */
  LLM_PRICES: z
    .string()
    .refine((text) => {
      try {
        JSON.parse(text);
        return true;
      } catch {
        return false;
      }
    }, 'must be JSON like {"openai/gpt-4o-mini":{"inputPerMillion":0.15,"outputPerMillion":0.6}}')
    .optional(),
  // Spend ceilings (lib/spend.ts, docs/security.md "Spend"): the daily token quota of an org that
  // sets none, the most an org admin may set, and the token budget of a run whose agent sets none.
  ORG_DAILY_TOKEN_QUOTA_DEFAULT: z.coerce.number().int().positive().default(DEFAULT_SPEND_SETTINGS.orgDailyTokenQuotaDefault),
  ORG_DAILY_TOKEN_QUOTA_MAX: z.coerce.number().int().positive().default(DEFAULT_SPEND_SETTINGS.orgDailyTokenQuotaMax),
  RUN_TOKEN_BUDGET_DEFAULT: z.coerce.number().int().positive().max(2_147_483_647).default(DEFAULT_SPEND_SETTINGS.runTokenBudgetDefault),
  // The models agents may use (ids or `vendor/*` prefixes, comma-separated); unset: the models
  // LLM_PRICES and the built-in price table name. Orgs may narrow it further.
  LLM_MODELS: z
    .string()
    .default('')
    .transform((v) => v.split(',').map((m) => m.trim()).filter(Boolean))
    .pipe(z.array(z.string().max(200))),
  // CRM OAuth apps (integrations/crm/settings.ts). A provider without a client id offers token connections only.
  KOMMO_CLIENT_ID: z.string().min(1).optional(),
  KOMMO_CLIENT_SECRET: z.string().min(1).optional(),
  KOMMO_REDIRECT_URI: z.string().url().optional(),
  KOMMO_AUTHORIZE_URL: z.string().url().default('https://www.kommo.com/oauth'),
  HUBSPOT_CLIENT_ID: z.string().min(1).optional(),
  HUBSPOT_CLIENT_SECRET: z.string().min(1).optional(),
  HUBSPOT_REDIRECT_URI: z.string().url().optional(),
  HUBSPOT_AUTHORIZE_URL: z.string().url().default('https://app.hubspot.com/oauth/authorize'),
  HUBSPOT_API_BASE_URL: z.string().url().default('https://api.hubapi.com'),
  CRM_HTTP_TIMEOUT_MS: positiveMs.default(30_000),
  // The public origin webhooks are delivered to (HubSpot signs the full URL it called).
  API_PUBLIC_URL: z.string().url().optional(),
  // Hosts (name, IP or host:port, comma-separated) that customer-supplied URLs may reach although
  // they are internal (lib/ssrf.ts). Development and tests only (fake CRMs on loopback); keep empty in production.
  SSRF_ALLOWED_HOSTS: z
    .string()
    .default('')
    .transform((v) => v.split(',').map((h) => h.trim()).filter(Boolean)),
});

const apiSchema = baseSchema.extend({
  API_HOST: z.string().min(1).default('127.0.0.1'),
  API_PORT: port.default(3000),
  SUPABASE_JWT_SECRET: z.string().min(32, { message: 'must be the Supabase project JWT secret (at least 32 characters)' }),
  SUPABASE_JWT_ISSUER: z.string().min(1).optional(),
  /** Supabase's JWKS for asymmetric (ES256/RS256) access tokens; requires SUPABASE_JWT_ISSUER. */
  SUPABASE_JWKS_URL: z.string().url().optional(),
  // The console (web/) signs in against this Supabase project; both are public by design (the
  // anon key is meant for browsers) and are handed to the page by /console-config.json.
  SUPABASE_URL: z.string().url().optional(),
  SUPABASE_ANON_KEY: z.string().min(1).optional(),
  // Linked from a run's timeline for operators; no link when unset.
  TEMPORAL_UI_URL: z.string().url().optional(),
  // The built console (npm run build:console); the API serves it at / when the folder exists.
  CONSOLE_DIR: z.string().min(1).optional(),
  CORS_ALLOWED_ORIGINS: z
    .string()
    .default('')
    .transform((v) => v.split(',').map((o) => o.trim()).filter(Boolean))
    .pipe(z.array(z.url({ message: 'each origin must be a URL like https://app.example.com' }))),
  SHUTDOWN_DRAIN_DELAY_MS: z.coerce.number().int().min(0).max(120_000).default(0),
  RATE_LIMIT_PER_ORG_PER_MINUTE: z.coerce.number().int().positive().default(1200),
  RATE_LIMIT_PER_API_KEY_PER_MINUTE: z.coerce.number().int().positive().default(300),
  // One user's requests across all their orgs (api/plugins/limits.ts).
  RATE_LIMIT_PER_USER_PER_MINUTE: z.coerce.number().int().positive().default(600),
  // Failed authentications and failed unauthenticated calls (webhooks, OAuth callbacks) per client IP.
  RATE_LIMIT_FAILURES_PER_IP_PER_MINUTE: z.coerce.number().int().positive().default(120),
  // Event streams (SSE, api/services/stream-guard.ts): concurrent per user or API key, per org, and lifetime.
  STREAM_MAX_PER_USER: z.coerce.number().int().positive().default(10),
  STREAM_MAX_PER_ORG: z.coerce.number().int().positive().default(100),
  STREAM_MAX_LIFETIME_SECONDS: z.coerce.number().int().min(10).max(86_400).default(900),
  // Proxies in front of the API whose X-Forwarded-For is believed (Fastify trustProxy):
  // comma-separated addresses/CIDRs. Unset: the socket's peer is the client. Per-IP budgets need it
  // behind a load balancer, or every client shares the balancer's address.
  TRUST_PROXY: z
    .string()
    .regex(/^[0-9a-fA-F.:/]+(,[0-9a-fA-F.:/]+)*$/, 'addresses/CIDRs like 10.0.0.0/8,127.0.0.1')
    .optional(),
  // How many of each thing one person or org may hold (api/services/caps.ts); past it, 409 limit-reached.
  LIMIT_ORGS_PER_USER: z.coerce.number().int().positive().default(20),
  LIMIT_AGENTS_PER_ORG: z.coerce.number().int().positive().default(200),
  LIMIT_KNOWLEDGE_DOCUMENTS_PER_ORG: z.coerce.number().int().positive().default(10_000),
  LIMIT_API_KEYS_PER_ORG: z.coerce.number().int().positive().default(50),
  LIMIT_INVITES_PER_ORG: z.coerce.number().int().positive().default(500),
  LIMIT_WEBHOOK_ENDPOINTS_PER_ORG: z.coerce.number().int().positive().default(20),
  TEMPORAL_CALL_DEADLINE_MS: positiveMs.max(60_000).default(5_000),
  RUN_DISPATCH_INTERVAL_MS: positiveMs.max(3_600_000).default(15_000),
});

const workerSchema = baseSchema.extend({
  LLM_BASE_URL: z.string().url().default('https://openrouter.ai/api/v1'),
  LLM_API_KEY: z.string().min(1).optional(),
  LLM_TIMEOUT_MS: positiveMs.default(120_000),
  /** Embedding model of the deployment's LLM endpoint for knowledge search; unset: lexical retrieval only. */
  LLM_EMBEDDING_MODEL: z.string().min(1).max(200).optional(),
  WORKER_SHUTDOWN_GRACE_MS: positiveMs.default(30_000),
  // Worker Deployment Versioning (docs/operations.md): the deployment (stable, e.g. the service
  // name) and this image's build id (e.g. its tag or git SHA). Both or neither; unversioned without.
  TEMPORAL_WORKER_DEPLOYMENT_NAME: z.string().min(1).max(255).regex(/^[^.]+$/, 'must not contain "."').optional(),
  TEMPORAL_WORKER_BUILD_ID: z.string().min(1).max(255).optional(),
  // The Temporal SDK's own metrics (Runtime telemetry, `temporal_` prefix), host:port.
  TEMPORAL_METRICS_BIND_ADDRESS: z.string().min(1).optional(),
});

const codecServerSchema = z.object({
  APP_ENV: environment.default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  TEMPORAL_CODEC_KEYS: z.string().min(1, { message: 'the codec server needs the keyring it decodes with' }),
  TEMPORAL_CODEC_ACTIVE_KEY_ID: z.string().min(1).optional(),
  CODEC_SERVER_HOST: z.string().min(1).default('127.0.0.1'),
  CODEC_SERVER_PORT: port.default(8234),
  // Operator tokens (comma-separated, at least 32 characters each) accepted as `Authorization: Bearer`
  // or as the first path segment of the endpoint URL given to the Temporal UI.
  CODEC_SERVER_TOKENS: z.string().min(32, { message: 'comma-separated operator tokens, at least 32 characters each' }),
  // Origins of the Temporal UI allowed to call the codec server from the browser.
  CODEC_SERVER_CORS_ORIGINS: z.string().min(1).default('http://127.0.0.1:8233,http://localhost:8233'),
});

/** `npm run deploy:setup`, `npm run replay` and other one-shot tools that only talk to Temporal. */
const temporalToolSchema = z.object({
  ...temporalConnectionShape,
  TEMPORAL_CODEC_KEYS: z.string().min(1).optional(),
  TEMPORAL_CODEC_ACTIVE_KEY_ID: z.string().min(1).optional(),
});

/** lib/migrate.ts's defaults too, for callers that pass no settings (the test and dev stacks). */
export const MIGRATION_LOCK_DEFAULTS = { lockTimeoutMs: 5_000, lockRetries: 5 } as const;

/** How each migration waits for its locks (lib/migrate.ts): `npm run migrate` and `deploy:setup`. */
const migrationLockShape = {
  // The transaction-local lock_timeout of each migration: a migration queued behind a long
  // transaction holds up every query queued behind it, so it gives up after this long instead.
  MIGRATION_LOCK_TIMEOUT_MS: positiveMs.default(MIGRATION_LOCK_DEFAULTS.lockTimeoutMs),
  // Tries after the first for a migration that gave up on a lock, with doubling waits between them.
  MIGRATION_LOCK_RETRIES: z.coerce.number().int().min(0).max(50).default(MIGRATION_LOCK_DEFAULTS.lockRetries),
};
const migrationLockSchema = z.object(migrationLockShape);

/** `npm run deploy:setup`: the one-shot job before a release (scripts/deploy-setup.ts). */
const setupSchema = temporalToolSchema.extend({
  DATABASE_MIGRATION_URL: z.string().url({ message: 'must be a postgres:// URL of a role that owns the schema (migrations)' }),
  ...migrationLockShape,
  // Self-hosted Postgres only: the password `authenticator` (the API's and workers' role) logs in with.
  AUTHENTICATOR_PASSWORD: z.string().min(1).optional(),
  // Retention of closed workflows when setup has to create the namespace (self-hosted Temporal).
  TEMPORAL_NAMESPACE_RETENTION_DAYS: z.coerce.number().int().min(1).max(3650).default(30),
  // How long setup waits for Temporal to answer before giving up (a fresh cluster starts slowly).
  SETUP_TEMPORAL_WAIT_MS: positiveMs.default(120_000),
});

export type ApiConfig = z.infer<typeof apiSchema>;
export type WorkerConfig = z.infer<typeof workerSchema>;
export type CodecServerConfig = z.infer<typeof codecServerSchema>;
export type TemporalToolConfig = z.infer<typeof temporalToolSchema>;
export type SetupConfig = z.infer<typeof setupSchema>;
export type MigrationLockConfig = z.infer<typeof migrationLockSchema>;
export type TemporalConnectionConfig = z.infer<z.ZodObject<typeof temporalConnectionShape>>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** A rule across variables, checked on the raw values so its problem is listed with the schema's. */
type CrossCheck = (env: Record<string, string>) => string[];

function parse<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv, ...checks: CrossCheck[]): z.infer<S> {
  // Empty strings count as unset: `FOO= npm run dev` should fall back to the default.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== '')) as Record<string, string>;
  const result = schema.safeParse(cleaned);
  // Every problem at once, so an operator fixes the deployment in one round, not one per restart.
  const problems = result.success
    ? temporalConnectionProblems(result.data as Partial<TemporalConnectionConfig>)
    : result.error.issues.map((i) => {
        const name = i.path.join('.') || '(root)';
        return i.path.length === 1 && cleaned[String(i.path[0])] === undefined ? `${name}: required but not set` : `${name}: ${i.message}`;
      });
  problems.push(...checks.flatMap((check) => check(cleaned)));
  if (!result.success || problems.length > 0) throw new ConfigError(problems);
  return result.data;
}

function temporalConnectionProblems(config: Partial<TemporalConnectionConfig>): string[] {
  if (!('TEMPORAL_ADDRESS' in config)) return [];
  const problems: string[] = [];
  if (Boolean(config.TEMPORAL_TLS_CERT) !== Boolean(config.TEMPORAL_TLS_KEY)) {
    problems.push(`${config.TEMPORAL_TLS_CERT ? 'TEMPORAL_TLS_KEY' : 'TEMPORAL_TLS_CERT'}: required with ${config.TEMPORAL_TLS_CERT ? 'TEMPORAL_TLS_CERT' : 'TEMPORAL_TLS_KEY'} (mutual TLS needs the certificate and its key)`);
  }
  const tlsSettings = (['TEMPORAL_TLS_CA', 'TEMPORAL_TLS_CERT', 'TEMPORAL_TLS_SERVER_NAME'] as const).filter((k) => config[k]);
  if (config.TEMPORAL_TLS === false && tlsSettings.length > 0) {
    problems.push(`TEMPORAL_TLS: is false but ${tlsSettings.join(', ')} ${tlsSettings.length === 1 ? 'is' : 'are'} set; remove one or the other`);
  }
  return problems;
}

/** Histories must never hold readable tenant data in production: no keyring, no start. */
const codecInProduction: CrossCheck = (env) =>
  env.APP_ENV === 'production' && !env.TEMPORAL_CODEC_KEYS ? ['TEMPORAL_CODEC_KEYS: required when APP_ENV=production (Temporal payload encryption)'] : [];

/** Asymmetric keys are published for anyone to fetch; only the issuer ties a token to our project. */
const issuerWithJwks: CrossCheck = (env) => (env.SUPABASE_JWKS_URL && !env.SUPABASE_JWT_ISSUER ? ['SUPABASE_JWT_ISSUER: required when SUPABASE_JWKS_URL is set'] : []);

/**
 * A real provider without a key would fail every run at the first LLM call; refuse to start
 * instead. Only development may talk to a keyless endpoint (the sandbox LLM, a local Ollama).
 */
const llmKeyInProduction: CrossCheck = (env) => (env.APP_ENV === 'production' && !env.LLM_API_KEY ? ['LLM_API_KEY: required when APP_ENV=production'] : []);

const versioningPair: CrossCheck = (env) =>
  Boolean(env.TEMPORAL_WORKER_DEPLOYMENT_NAME) !== Boolean(env.TEMPORAL_WORKER_BUILD_ID)
    ? [
        `${env.TEMPORAL_WORKER_BUILD_ID ? 'TEMPORAL_WORKER_DEPLOYMENT_NAME' : 'TEMPORAL_WORKER_BUILD_ID'}: required with ${env.TEMPORAL_WORKER_BUILD_ID ? 'TEMPORAL_WORKER_BUILD_ID' : 'TEMPORAL_WORKER_DEPLOYMENT_NAME'} (Worker Versioning needs both)`,
      ]
    : [];

/** The SSRF allowlist exists for fakes on loopback; in production it would open internal hosts to tenants' URLs. */
const noSsrfAllowlistInProduction: CrossCheck = (env) =>
  env.APP_ENV === 'production' && env.SSRF_ALLOWED_HOSTS?.trim() ? ['SSRF_ALLOWED_HOSTS: must be empty when APP_ENV=production (it lets tenant-supplied URLs reach internal hosts)'] : [];

/** An org that sets no quota must not get more than one that sets the most it may. */
const quotaDefaultWithinMax: CrossCheck = (env) => {
  const fallbackDefault = DEFAULT_SPEND_SETTINGS.orgDailyTokenQuotaDefault;
  const fallbackMax = DEFAULT_SPEND_SETTINGS.orgDailyTokenQuotaMax;
  const value = Number(env.ORG_DAILY_TOKEN_QUOTA_DEFAULT ?? fallbackDefault);
  const max = Number(env.ORG_DAILY_TOKEN_QUOTA_MAX ?? fallbackMax);
  return value > max ? [`ORG_DAILY_TOKEN_QUOTA_DEFAULT: ${value} is above ORG_DAILY_TOKEN_QUOTA_MAX (${max})`] : [];
};

/** The spend ceilings of a parsed configuration (API and worker read the same variables). */
export function spendSettingsFrom(config: Pick<ApiConfig, 'ORG_DAILY_TOKEN_QUOTA_DEFAULT' | 'ORG_DAILY_TOKEN_QUOTA_MAX' | 'RUN_TOKEN_BUDGET_DEFAULT'>): SpendSettings {
  return {
    orgDailyTokenQuotaDefault: config.ORG_DAILY_TOKEN_QUOTA_DEFAULT,
    orgDailyTokenQuotaMax: config.ORG_DAILY_TOKEN_QUOTA_MAX,
    runTokenBudgetDefault: config.RUN_TOKEN_BUDGET_DEFAULT,
  };
}

export function loadApiConfig(env: NodeJS.ProcessEnv = process.env): ApiConfig {
  return parse(apiSchema, env, codecInProduction, issuerWithJwks, quotaDefaultWithinMax, noSsrfAllowlistInProduction);
}

const codecTokenLength: CrossCheck = (env) =>
  env.CODEC_SERVER_TOKENS && env.CODEC_SERVER_TOKENS.split(',').some((t) => t.trim().length < 32) ? ['CODEC_SERVER_TOKENS: every token must be at least 32 characters'] : [];

export function loadCodecServerConfig(env: NodeJS.ProcessEnv = process.env): CodecServerConfig {
  return parse(codecServerSchema, env, codecTokenLength);
}

export function loadTemporalToolConfig(env: NodeJS.ProcessEnv = process.env): TemporalToolConfig {
  return parse(temporalToolSchema, env);
}

export function loadSetupConfig(env: NodeJS.ProcessEnv = process.env): SetupConfig {
  return parse(setupSchema, env);
}

/** `npm run migrate`, which takes its URL from DATABASE_MIGRATION_URL or DATABASE_URL itself. */
export function loadMigrationLockConfig(env: NodeJS.ProcessEnv = process.env): MigrationLockConfig {
  return parse(migrationLockSchema, env);
}

/** The options lib/migrate.ts takes for these settings. */
export function migrationLockOptions(config: MigrationLockConfig): { lockTimeoutMs: number; lockRetries: number } {
  return { lockTimeoutMs: config.MIGRATION_LOCK_TIMEOUT_MS, lockRetries: config.MIGRATION_LOCK_RETRIES };
}

export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  return parse(workerSchema, env, llmKeyInProduction, codecInProduction, versioningPair, quotaDefaultWithinMax, noSsrfAllowlistInProduction);
}

/** Every variable the project reads, for the README table and `--help` output. */
export const configReference = {
  api: apiSchema.shape,
  worker: workerSchema.shape,
  codecServer: codecServerSchema.shape,
  setup: setupSchema.shape,
};
