/**
 * The API serves the built console (api/plugins/console.ts): the page and its hashed assets with
 * a strict Content-Security-Policy, compressed, and the config that points it at Supabase.
 */
import { mkdtemp } from 'node:fs/promises';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONSOLE_DIST, startFullTestApp, type FullTestApp } from '../support/full-app.js';

describe('console serving', () => {
  let full: FullTestApp;
  let unbuilt: FullTestApp;

  beforeAll(async () => {
    full = await startFullTestApp({ console: { supabaseUrl: 'https://project-ref.supabase.co', supabaseAnonKey: 'anon-key-for-browsers', temporalUiUrl: 'http://127.0.0.1:8233' } });
    unbuilt = await startFullTestApp({ console: { dir: await mkdtemp(path.join(os.tmpdir(), 'no-console-')) } });
  });
  afterAll(async () => {
    await full?.close();
    await unbuilt?.close();
  });

  it('serves the page with a CSP that allows only our scripts and the API plus Supabase as connections', async () => {
    const res = await full.app.inject({ method: 'GET', url: '/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.headers['cache-control']).toBe('no-cache');
    const csp = String(res.headers['content-security-policy']);
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self' https://project-ref.supabase.co");
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toContain('unsafe-inline');
    // No inline script for the CSP to block: every script has a src.
    expect(res.body).toMatch(/<script type="module" crossorigin src="\/assets\/[^"]+\.js"><\/script>/);
    expect(res.body).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
  });

  it('serves hashed assets gzipped and cacheable for a year, and 404s unknown ones as problems', async () => {
    const script = readdirSync(path.join(CONSOLE_DIST, 'assets')).find((f) => f.endsWith('.js'))!;
    const res = await full.app.inject({ method: 'GET', url: `/assets/${script}`, headers: { 'accept-encoding': 'gzip, br' } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-encoding']).toBe('gzip');
    expect(res.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(gunzipSync(res.rawPayload).equals(readFileSync(path.join(CONSOLE_DIST, 'assets', script)))).toBe(true);
    const plain = await full.app.inject({ method: 'GET', url: `/assets/${script}` });
    expect(plain.headers['content-encoding']).toBeUndefined();

    const missing = await full.app.inject({ method: 'GET', url: '/assets/../../package.json' });
    expect(missing.statusCode).toBe(404);
    const unknown = await full.app.inject({ method: 'GET', url: '/assets/nope.js' });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.headers['content-type']).toMatch(/^application\/problem\+json/);
  });

  it('hands the page its Supabase project and the Temporal UI link, unauthenticated', async () => {
    const res = await full.app.inject({ method: 'GET', url: '/console-config.json' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ supabaseUrl: 'https://project-ref.supabase.co', supabaseAnonKey: 'anon-key-for-browsers', temporalUiUrl: 'http://127.0.0.1:8233' });
  });

  it('answers 503 with how to build it when the console was not built', async () => {
    const res = await unbuilt.app.inject({ method: 'GET', url: '/' });
    expect(res.statusCode).toBe(503);
    expect(res.json().detail).toContain('npm run build:console');
  });
});
