import { z } from 'zod';

/**
 * Configuration comes only from the environment and is validated once at start-up, so a
 * misconfigured process refuses to start with a list of every problem instead of failing
 * on the first request that needs the missing value.
 */

const environment = z.enum(['development', 'test', 'production']);

const port = z.coerce.number().int().min(0).max(65535);
const positiveMs = z.coerce.number().int().positive();

const baseSchema = z.object({
  APP_ENV: environment.default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DATABASE_URL: z.string().url({ message: 'must be a postgres:// URL of the application role (authenticator)' }),
  DATABASE_POOL_MAX: z.coerce.number().int().min(1).max(200).default(10),
  TEMPORAL_ADDRESS: z.string().min(1).default('127.0.0.1:7233'),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
});

const apiSchema = baseSchema.extend({
  API_HOST: z.string().min(1).default('127.0.0.1'),
  API_PORT: port.default(3000),
  SUPABASE_JWT_SECRET: z.string().min(32, { message: 'must be the Supabase project JWT secret (at least 32 characters)' }),
  SUPABASE_JWT_ISSUER: z.string().min(1).optional(),
});

const workerSchema = baseSchema.extend({
  LLM_BASE_URL: z.string().url().default('https://openrouter.ai/api/v1'),
  LLM_API_KEY: z.string().min(1).optional(),
  LLM_TIMEOUT_MS: positiveMs.default(120_000),
  WORKER_SHUTDOWN_GRACE_MS: positiveMs.default(30_000),
});

export type ApiConfig = z.infer<typeof apiSchema>;
export type WorkerConfig = z.infer<typeof workerSchema>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

function parse<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv): z.infer<S> {
  // Empty strings count as unset: `FOO= npm run dev` should fall back to the default.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const result = schema.safeParse(cleaned);
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`));
  }
  return result.data;
}

export function loadApiConfig(env: NodeJS.ProcessEnv = process.env): ApiConfig {
  return parse(apiSchema, env);
}

export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const config = parse(workerSchema, env);
  // A real provider without a key would fail every run at the first LLM call; refuse to start
  // instead. Only development may talk to a keyless endpoint (the sandbox LLM, a local Ollama).
  if (config.APP_ENV === 'production' && !config.LLM_API_KEY) {
    throw new ConfigError(['LLM_API_KEY: required when APP_ENV=production']);
  }
  return config;
}

/** Every variable the project reads, for the README table and `--help` output. */
export const configReference = {
  api: apiSchema.shape,
  worker: workerSchema.shape,
};
