import { ConfigError, loadApiConfig, spendSettingsFrom } from '../lib/config.js';
import { parsePriceTable } from '../lib/pricing.js';
import { operatorModels } from '../lib/spend.js';
import { createPool } from '../lib/db.js';
import { createLogger } from '../lib/logger.js';
import { createTemporalClient, describeTemporalConnection, diagnoseTemporalConnection } from '../lib/temporal.js';
import { startMetricsServer } from '../lib/metrics.js';
import { flushSentry, initSentry } from '../lib/sentry.js';
import { exitOnCrash } from '../lib/crash.js';
import { codecKeyringFrom, createDataConverter } from '../lib/temporal-codec.js';
import { buildApp } from './app.js';
import { crmSettingsFromConfig } from '../integrations/crm/settings.js';
import { keyringFromConfig } from '../lib/crypto.js';
import { fileURLToPath } from 'node:url';

async function main(): Promise<void> {
  const config = loadApiConfig();
  const logger = createLogger({ name: 'api', level: config.LOG_LEVEL });
  if (initSentry(config, 'api')) logger.info('Sentry error reporting on');
  exitOnCrash(logger);
  const pool = createPool(config.DATABASE_URL, { max: config.DATABASE_POOL_MAX, idleSeconds: config.DATABASE_POOL_IDLE_SECONDS, applicationName: 'api', pipeline: config.DATABASE_PIPELINE, preparedStatements: config.DATABASE_PREPARED_STATEMENTS });
  // Lazy: a Temporal that refuses us (a wrong client certificate, say) keeps /readyz red with
  // the reason instead of ending the process before anyone can ask.
  const temporal = await createTemporalClient(config, { lazy: true, dataConverter: createDataConverter(codecKeyringFrom(config)) });
  logger.info({ temporal: describeTemporalConnection(config) }, 'temporal client');
  const lifecycle = { draining: false };
  const crmKeyring = keyringFromConfig(config);
  const app = await buildApp({
    // CRM routes need the secrets keyring; without it the API serves everything else.
    ...(crmKeyring ? { crm: { keyring: crmKeyring, settings: crmSettingsFromConfig(config) } } : {}),
    lifecycle,
    diagnoseTemporal: () => diagnoseTemporalConnection(config),
    console: {
      dir: config.CONSOLE_DIR ?? fileURLToPath(new URL('../web/dist', import.meta.url)),
      ...(config.SUPABASE_URL ? { supabaseUrl: config.SUPABASE_URL } : {}),
      ...(config.SUPABASE_ANON_KEY ? { supabaseAnonKey: config.SUPABASE_ANON_KEY } : {}),
      ...(config.TEMPORAL_UI_URL ? { temporalUiUrl: config.TEMPORAL_UI_URL } : {}),
    },
    pool,
    temporal,
    logger,
    ...(config.API_PUBLIC_URL ? { publicUrl: config.API_PUBLIC_URL } : {}),
    corsAllowedOrigins: config.CORS_ALLOWED_ORIGINS,
    caps: {
      orgsPerUser: config.LIMIT_ORGS_PER_USER,
      agentsPerOrg: config.LIMIT_AGENTS_PER_ORG,
      knowledgeDocumentsPerOrg: config.LIMIT_KNOWLEDGE_DOCUMENTS_PER_ORG,
      apiKeysPerOrg: config.LIMIT_API_KEYS_PER_ORG,
      invitesPerOrg: config.LIMIT_INVITES_PER_ORG,
      webhookEndpointsPerOrg: config.LIMIT_WEBHOOK_ENDPOINTS_PER_ORG,
    },
    spend: { settings: spendSettingsFrom(config), models: operatorModels(config.LLM_MODELS, parsePriceTable(config.LLM_PRICES)) },
    streamLimits: { maxPerUser: config.STREAM_MAX_PER_USER, maxPerOrg: config.STREAM_MAX_PER_ORG, maxLifetimeMs: config.STREAM_MAX_LIFETIME_SECONDS * 1000 },
    ...(config.TRUST_PROXY !== undefined ? { trustProxy: config.TRUST_PROXY } : {}),
    temporalDeadlineMs: config.TEMPORAL_CALL_DEADLINE_MS,
    runDispatchIntervalMs: config.RUN_DISPATCH_INTERVAL_MS,
    rateLimits: {
      perOrg: config.RATE_LIMIT_PER_ORG_PER_MINUTE,
      perApiKey: config.RATE_LIMIT_PER_API_KEY_PER_MINUTE,
      perUser: config.RATE_LIMIT_PER_USER_PER_MINUTE,
      perIp: config.RATE_LIMIT_FAILURES_PER_IP_PER_MINUTE,
      windowMs: 60_000,
    },
    auth: {
      jwtSecret: config.SUPABASE_JWT_SECRET,
      ...(config.SUPABASE_JWT_ISSUER ? { issuer: config.SUPABASE_JWT_ISSUER } : {}),
      ...(config.SUPABASE_JWKS_URL ? { jwksUrl: config.SUPABASE_JWKS_URL } : {}),
    },
  });
  // Prometheus scrapes a listener of its own, never the public port (see lib/metrics.ts).
  const metrics = await startMetricsServer({ host: config.METRICS_HOST, port: config.METRICS_PORT ?? 9091 });
  logger.info({ metrics: metrics.url }, 'metrics listening');
  app.addHook('onClose', async () => {
    await temporal.connection.close();
    await pool.end();
    await metrics.close();
    // Events still queued (an error reported by a request that just drained) leave before we exit.
    await flushSentry();
  });

  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    // Readiness fails at once; after the drain delay (time for load balancers to notice) the
    // server stops accepting, lets in-flight requests finish, and only then exits.
    lifecycle.draining = true;
    logger.info({ signal, drainDelayMs: config.SHUTDOWN_DRAIN_DELAY_MS }, 'draining');
    const close = () => new Promise((resolve) => setTimeout(resolve, config.SHUTDOWN_DRAIN_DELAY_MS)).then(() => app.close());
    close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  await app.listen({ host: config.API_HOST, port: config.API_PORT });
}

main().catch((err: unknown) => {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
