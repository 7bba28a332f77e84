/** `npm run codec-server`: the operators' codec server (see api/codec-server.ts). */
import { ConfigError, loadCodecServerConfig } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { exitOnCrash } from '../lib/crash.js';
import { codecKeyringFrom } from '../lib/temporal-codec.js';
import { buildCodecServer } from './codec-server.js';

async function main(): Promise<void> {
  const config = loadCodecServerConfig();
  const logger = createLogger({ name: 'codec-server', level: config.LOG_LEVEL });
  exitOnCrash(logger);
  const app = await buildCodecServer({
    keyring: codecKeyringFrom(config)!,
    tokens: config.CODEC_SERVER_TOKENS.split(',').map((t) => t.trim()).filter(Boolean),
    corsOrigins: config.CODEC_SERVER_CORS_ORIGINS.split(',').map((o) => o.trim()).filter(Boolean),
    logger,
  });
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => void app.close().then(() => process.exit(0)));
  await app.listen({ host: config.CODEC_SERVER_HOST, port: config.CODEC_SERVER_PORT });
}

main().catch((err: unknown) => {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
