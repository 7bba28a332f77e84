/**
 * One harness for the console's browser tests: Debian's Chromium (headless, driven by
 * playwright-core) against the real stack (the API serving the built console, Postgres,
 * Temporal with an agent worker, the fake LLM and the sandbox Supabase Auth).
 *
 * `useConsoleBrowser()` registers the suite's hooks and returns handles that are filled in by
 * `beforeAll`. Every page opened through `newContext()` is watched: CSP violations and uncaught
 * errors are collected (each suite asserts there are none), and a failing test leaves a
 * screenshot of each open page under tests/.artifacts/.
 *
 * Chromium: CHROMIUM_PATH, or /usr/bin/chromium (scripts/stack/chromium.ts). `chromiumMissing()` registers a test that fails
 * under REQUIRE_CHROMIUM=1 (CI) and passes otherwise, so a missing browser never passes silently
 * in CI.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page, type Request } from 'playwright-core';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { CHROMIUM_LAUNCH_ARGS, chromiumPath } from '../../scripts/stack/chromium.js';
import { startSandboxAuth, type SandboxAuth, type SandboxAuthOptions } from '../../scripts/stack/sandbox-auth.js';
import { TEST_JWT_SECRET } from './auth.js';
import { startFullTestApp, type FullTestApp, type FullTestAppOptions } from './full-app.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
export const ARTIFACTS = path.join(root, 'tests', '.artifacts');
let axeSource: string | undefined;

/** Call first inside `describe`: true (and a test that insists under CI) when Chromium is missing. */
export function chromiumMissing(): boolean {
  if (existsSync(chromiumPath)) return false;
  it('needs Chromium', () => {
    expect(process.env.REQUIRE_CHROMIUM, `no Chromium at ${chromiumPath} (apt-get install chromium)`).not.toBe('1');
  });
  return true;
}

export interface Credentials {
  email: string;
  password: string;
}

export interface ConsoleBrowser {
  /** The API's origin, serving the console at `/`. */
  base: string;
  full: FullTestApp;
  auth: SandboxAuth;
  browser: Browser;
  cspViolations: string[];
  pageErrors: string[];
  newContext(width?: number): Promise<BrowserContext>;
  /** From the sign-in screen: creates the account (the console signs in right after). */
  signUp(page: Page, who: Credentials): Promise<void>;
  /** Opens the console and signs in with email and password. */
  signIn(page: Page, who: Credentials): Promise<void>;
  /** axe-core (WCAG 2.1 A/AA and best practices) finds no serious or critical violation and the page fits its width. */
  expectAccessible(page: Page, label: string): Promise<void>;
}

export interface ConsoleBrowserOptions {
  app?: FullTestAppOptions;
  auth?: Partial<SandboxAuthOptions>;
  label?: string;
}

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: Array<{ target: string[] }>;
}

export async function axeViolations(page: Page): Promise<AxeViolation[]> {
  axeSource ??= readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  const result = (await page.evaluate(
    `${axeSource}\n;axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } }).then((r) => ({ violations: r.violations, passes: r.passes.length }))`,
  )) as { violations: AxeViolation[]; passes: number };
  expect(result.passes).toBeGreaterThan(0);
  return result.violations;
}

export function useConsoleBrowser(options: ConsoleBrowserOptions = {}): ConsoleBrowser {
  const opened: Page[] = [];
  const label = options.label ?? 'console';
  const handles = { cspViolations: [] as string[], pageErrors: [] as string[] } as ConsoleBrowser;

  // Requests in flight per page, event streams left out: those stay open for as long as the
  // screen does, so Playwright's `networkidle` never comes on a screen that follows one.
  const inFlight = new WeakMap<Page, Set<Request>>();
  function watch(page: Page) {
    const pending = new Set<Request>();
    inFlight.set(page, pending);
    page.on('request', (request) => {
      if (request.headers().accept !== 'text/event-stream') pending.add(request);
    });
    page.on('requestfinished', (request) => pending.delete(request));
    page.on('requestfailed', (request) => pending.delete(request));
    page.on('console', (message) => {
      if (/Content.Security.Policy/i.test(message.text())) handles.cspViolations.push(message.text());
    });
    page.on('pageerror', (err) => handles.pageErrors.push(err.message));
  }
  handles.newContext = async (width = 1280) => {
    const context = await handles.browser.newContext({ viewport: { width, height: 900 } });
    context.on('page', (page) => {
      opened.push(page);
      watch(page);
    });
    return context;
  };
  handles.signUp = async (page, who) => {
    await page.getByRole('button', { name: 'Create an account' }).click();
    await page.getByLabel('Email').fill(who.email);
    await page.getByLabel('Password').fill(who.password);
    await page.getByRole('button', { name: 'Create account' }).click();
  };
  handles.signIn = async (page, who) => {
    await page.goto(handles.base);
    await page.getByLabel('Email').fill(who.email);
    await page.getByLabel('Password').fill(who.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
  };
  /** Until no request but event streams has been in flight for 500 ms (at most 10 s): the screen's data has arrived. */
  const settled = async (page: Page) => {
    const pending = inFlight.get(page);
    await page.waitForLoadState('load');
    const until = Date.now() + 10_000;
    let quietSince = Date.now();
    while (pending && Date.now() < until) {
      if (pending.size > 0) quietSince = Date.now();
      else if (Date.now() - quietSince >= 500) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  handles.expectAccessible = async (page, what) => {
    await settled(page);
    const serious = (await axeViolations(page))
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
    expect(serious, what).toEqual([]);
    const widths = (await page.evaluate('({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth })')) as { scroll: number; client: number };
    expect(widths.scroll, `${what} scrolls horizontally`).toBeLessThanOrEqual(widths.client);
  };

  beforeAll(async () => {
    handles.auth = await startSandboxAuth({ jwtSecret: TEST_JWT_SECRET, ...options.auth });
    handles.full = await startFullTestApp({
      agentWorker: true,
      ...options.app,
      console: { supabaseUrl: handles.auth.url, supabaseAnonKey: handles.auth.anonKey, temporalUiUrl: 'http://127.0.0.1:8233', ...options.app?.console },
    });
    await handles.full.app.listen({ host: '127.0.0.1', port: 0 });
    handles.base = `http://127.0.0.1:${(handles.full.app.server.address() as AddressInfo).port}`;
    handles.browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: CHROMIUM_LAUNCH_ARGS });
  }, 120_000);

  // A failing step leaves a screenshot of every page still open, to see what the user saw.
  afterEach(async (ctx) => {
    if (ctx.task.result?.state !== 'fail') return;
    mkdirSync(ARTIFACTS, { recursive: true });
    for (const [i, page] of opened.entries()) {
      if (!page.isClosed()) await page.screenshot({ path: path.join(ARTIFACTS, `${label}-failure-${i}.png`), fullPage: true }).catch(() => {});
    }
  });

  afterAll(async () => {
    await handles.browser?.close();
    await handles.full?.close();
    await handles.auth?.close();
  });

  return handles;
}
