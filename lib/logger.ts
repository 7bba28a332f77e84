import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * Paths redacted from every log line. Secrets must never reach logs, even at debug level:
 * authorization headers, API keys, tokens, passwords and anything under `credentials`.
 */
export const redactedPaths = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'headers.authorization',
  'authorization',
  'apiKey',
  'api_key',
  'token',
  'accessToken',
  'access_token',
  'refreshToken',
  'refresh_token',
  'clientSecret',
  'client_secret',
  'password',
  'secret',
  'credentials',
  '*.apiKey',
  '*.api_key',
  '*.token',
  '*.accessToken',
  '*.access_token',
  '*.refreshToken',
  '*.refresh_token',
  '*.clientSecret',
  '*.client_secret',
  '*.password',
  '*.secret',
  '*.credentials',
  '*.authorization',
];

/** The request fields worth logging; query values masked. */
function serializeRequest(req: { method?: string; url?: string; ip?: string; socket?: { remoteAddress?: string } }) {
  return { method: req.method, url: maskQuery(req.url ?? ''), remoteAddress: req.ip ?? req.socket?.remoteAddress };
}

export function maskQuery(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const masked = url
    .slice(q + 1)
    .split('&')
    .map((pair) => `${pair.split('=')[0]}=[redacted]`)
    .join('&');
  return `${url.slice(0, q)}?${masked}`;
}

export function createLogger(options: { name: string; level?: string; destination?: pino.DestinationStream } & LoggerOptions): Logger {
  const { destination, ...rest } = options;
  const config: LoggerOptions = {
    level: 'info',
    ...rest,
    redact: { paths: redactedPaths, censor: '[redacted]' },
    // Replaces Fastify's request serializer (ours take precedence): query strings can carry
    // tokens (EventSource cannot send headers), so their values never reach a log line.
    serializers: { req: serializeRequest, ...rest.serializers },
    base: { service: options.name },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(config, destination) : pino(config);
}
