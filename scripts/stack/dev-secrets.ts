/**
 * Where `npm run dev` keeps its generated dev-only secrets (the JWT secret, the Temporal payload
 * keyring, the codec server token), so tools run against the dev stack can find them:
 * `npm run replay` uses the dev keyring when TEMPORAL_CODEC_KEYS is not set. Never used in
 * production (APP_ENV=production ignores it). DEV_SECRETS_FILE moves it (tests).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

export function devSecretsFile(): string {
  return process.env.DEV_SECRETS_FILE ?? path.join(root, '.data', 'dev-secrets.json');
}

/** The dev stack's payload keyring, when `npm run dev` has run on this checkout. */
export function devCodecKeys(): string | undefined {
  try {
    const secrets = JSON.parse(readFileSync(devSecretsFile(), 'utf8')) as { codecKeys?: unknown };
    return typeof secrets.codecKeys === 'string' && secrets.codecKeys ? secrets.codecKeys : undefined;
  } catch {
    return undefined;
  }
}
