import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { toProblem } from '../problems.js';

export interface ConsoleOptions {
  /** The built console (web/dist); when it does not exist the routes answer 503 with how to build it. */
  dir: string;
  /** Handed to the page: the Supabase project it signs in against, and its public anon key. */
  supabaseUrl?: string;
  supabaseAnonKey?: string;
  /** Linked from run timelines for operators. */
  temporalUiUrl?: string;
}

interface Asset {
  body: Buffer;
  gzipped: Buffer | null;
  type: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

/** The whole build is a few hundred kilobytes: read once at start, compressed once, served from memory. */
function loadAssets(dir: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  const walk = (folder: string) => {
    for (const name of readdirSync(folder)) {
      const file = path.join(folder, name);
      if (statSync(file).isDirectory()) {
        walk(file);
        continue;
      }
      const body = readFileSync(file);
      const type = TYPES[path.extname(name)] ?? 'application/octet-stream';
      const compressible = /^(text\/|application\/json|image\/svg)/.test(type) && body.length > 1024;
      assets.set('/' + path.relative(dir, file).split(path.sep).join('/'), { body, gzipped: compressible ? gzipSync(body, { level: 9 }) : null, type });
    }
  };
  walk(dir);
  return assets;
}

/**
 * A strict policy: scripts and styles only from our origin (the build emits no inline code), the
 * network only to the API (same origin) and the Supabase project, no framing, no plugins.
 */
export function consoleContentSecurityPolicy(supabaseUrl?: string): string {
  const connect = ["'self'", ...(supabaseUrl ? [new URL(supabaseUrl).origin] : [])].join(' ');
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    `connect-src ${connect}`,
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/**
 * Serves the tenant console (web/) on the API's origin, so the browser calls the API without
 * CORS: `/` is the app (it routes in the URL fragment, so no other path is needed), hashed
 * files under `/assets/` are cached for a year, and `/console-config.json` tells the page which
 * Supabase project to sign in against.
 */
export function registerConsole(app: FastifyInstance, options: ConsoleOptions): void {
  const assets = existsSync(options.dir) ? loadAssets(options.dir) : new Map<string, Asset>();
  const csp = consoleContentSecurityPolicy(options.supabaseUrl);
  const config = JSON.stringify({
    supabaseUrl: options.supabaseUrl ?? null,
    supabaseAnonKey: options.supabaseAnonKey ?? null,
    temporalUiUrl: options.temporalUiUrl ?? null,
  });

  const send = (request: FastifyRequest, reply: FastifyReply, asset: Asset, cache: string) => {
    reply.header('content-security-policy', csp).header('cache-control', cache).header('vary', 'accept-encoding').type(asset.type);
    const acceptsGzip = /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''));
    if (asset.gzipped && acceptsGzip) return reply.header('content-encoding', 'gzip').send(asset.gzipped);
    return reply.send(asset.body);
  };
  const notBuilt = (request: FastifyRequest, reply: FastifyReply) =>
    reply
      .code(503)
      .type('application/problem+json')
      .send(toProblem('service-unavailable', `The console is not built in ${options.dir}; run \`npm run build:console\`.`, { requestId: request.id }));

  app.get('/', { config: { auth: 'public-docs', minRole: null }, schema: { hide: true } }, async (request, reply) => {
    const index = assets.get('/index.html');
    if (!index) return notBuilt(request, reply);
    // Never cached: a new deploy's index names the new hashed assets.
    return send(request, reply, index, 'no-cache');
  });
  // Vite emits every asset flat in assets/, so one path segment is enough.
  app.get('/assets/:file', { config: { auth: 'public-docs', minRole: null }, schema: { hide: true } }, async (request, reply) => {
    const asset = assets.get(`/assets/${(request.params as { file: string }).file}`);
    if (!asset) {
      if (assets.size === 0) return notBuilt(request, reply);
      return reply.code(404).type('application/problem+json').send(toProblem('not-found', `No console asset ${request.url}.`, { requestId: request.id }));
    }
    return send(request, reply, asset, 'public, max-age=31536000, immutable');
  });
  app.get('/console-config.json', { config: { auth: 'public-docs', minRole: null }, schema: { hide: true } }, async (_request, reply) =>
    reply.header('cache-control', 'no-cache').type('application/json').send(config),
  );
}
