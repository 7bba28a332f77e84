/**
 * `npm run bench:console` (and part of `npm run bench`): the console's budgets from issue 14,
 * measured on the dev stack in Debian's Chromium. Prints; asserts nothing.
 *
 * The stack is `npm run dev` itself (scripts/dev.ts in a child process: API and worker as their
 * own processes, sandbox Supabase Auth, sandbox CRM, the demo org, user and agent), with the
 * swaps its header documents: TEMPORAL_ADDRESS and DATABASE_URL name a Temporal dev server and a
 * fresh database this bench starts on free ports (so it never meets a developer's own `npm run
 * dev` on 7233 or .data/postgres), LLM_BASE_URL a sandbox LLM in this process that streams its
 * answer a word at a time, and the ports and secrets file are free ones of its own.
 *
 * 1. Initial JavaScript: the scripts and module preloads web/dist/index.html loads, fetched from
 *    the API with `accept-encoding: gzip` and counted as sent (the API serves gzip level 9 from
 *    memory, api/plugins/console.ts); the stylesheets likewise. Measured once: the build decides it.
 * 2. First screen, BENCH_ROUNDS rounds, each in a new browser context (cold cache): navigation to
 *    the console until its heading is painted, for a visitor (the sign-in screen) and for the
 *    demo user signed in, returning (their session and last org in storage: `/` opens that org's
 *    Agents screen at once and checks the org list as it arrives) and in a browser that remembers
 *    no org (`/` waits for the org list to choose one). Timed in the page from navigation start (performance.now(): a MutationObserver
 *    installed before any script sees the <h1> arrive, then the frame after it is painted) and as
 *    wall time in this process around page.goto until Playwright sees the heading.
 * 3. Live tokens, BENCH_ROUNDS runs: the sandbox LLM streams BENCH_CONSOLE_WORDS (default 60)
 *    words BENCH_CONSOLE_WORD_MS (default 50) apart; the run's event stream is read by this
 *    process (fetch, the same bearer token as the page) and the run's page in the console
 *    timestamps each change of the live text with a MutationObserver. Each raw delta's delay is
 *    the time the page first showed text at least that long minus the time its bytes arrived
 *    here. Both clocks are the host's (performance.timeOrigin + performance.now() in Node and in
 *    the page); the offset between them is measured by bracketing page.evaluate calls and taken
 *    from the one with the shortest round trip. The raw reader runs in this process, not in the
 *    page, so a console busy re-rendering cannot delay both sides alike and hide its own cost.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startFakeLlm } from '../scripts/stack/sandbox-llm.js';
import { freePort } from '../scripts/stack/ports.js';
import { bindChildToParent } from '../scripts/stack/process.js';
import { startSuiteStack } from '../scripts/stack/suite-stack.js';
import { SseParser } from '../web/src/state/sse.js';
import { CHROMIUM_LAUNCH_ARGS, chromiumPath } from '../scripts/stack/chromium.js';
import { FigureLog, ROUNDS, percentile } from './support/figures.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const WORDS = Number(process.env.BENCH_CONSOLE_WORDS ?? 60);
const WORD_MS = Number(process.env.BENCH_CONSOLE_WORD_MS ?? 50);
// Time for the page and this process to subscribe to the run's stream before the first token:
// deltas are live only (never replayed), so a subscriber that comes late misses them.
const FIRST_TOKEN_DELAY_MS = 3_000;
const log = (msg: string) => console.log(`[bench:console] ${msg}`);
const ms = (n: number) => `${n.toFixed(1)} ms`;
const hostNow = () => performance.timeOrigin + performance.now();

interface DevStack {
  base: string;
  email: string;
  password: string;
  orgId: string;
  stop(): Promise<void>;
}

/** scripts/dev.ts on its own Temporal, database, LLM, ports and secrets; resolves once its banner is printed. */
async function startDevStack(llmUrl: string): Promise<DevStack> {
  const suite = await startSuiteStack({ name: 'bench_console', postgresDataDir: path.join(root, '.data', 'bench-console-postgres'), log });
  const secretsDir = mkdtempSync(path.join(os.tmpdir(), 'bench-console-'));
  const [apiPort, codecPort, crmPort, authPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'scripts', 'dev.ts')], {
    cwd: root,
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: suite.temporal.address,
      DATABASE_URL: suite.adminUrl,
      LLM_BASE_URL: llmUrl,
      API_PORT: String(apiPort),
      CODEC_SERVER_PORT: String(codecPort),
      SANDBOX_CRM_PORT: String(crmPort),
      SANDBOX_AUTH_PORT: String(authPort),
      DEV_SECRETS_FILE: path.join(secretsDir, 'dev-secrets.json'),
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  bindChildToParent(child, 'SIGTERM', 20);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    await suite.stop();
    rmSync(secretsDir, { recursive: true, force: true });
  };
  let output = '';
  child.stderr!.on('data', (chunk: Buffer) => process.stderr.write(chunk));
  try {
    const banner = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`npm run dev printed no banner within 180 s:\n${output.slice(-2000)}`)), 180_000);
      child.stdout!.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Ctrl-C stops everything.\n─')) {
          clearTimeout(timer);
          resolve(output);
        }
      });
      child.once('exit', (code) => reject(new Error(`npm run dev exited (${code}) before its banner:\n${output.slice(-2000)}`)));
    });
    // Read the banner as a person would: the console's URL, the demo login and the demo org.
    const field = (name: string) => new RegExp(`^ ${name}\\s+(\\S+)`, 'm').exec(banner)?.[1];
    const login = /^ Demo login\s+(\S+) \/ (\S+)/m.exec(banner);
    const base = field('Console')?.replace(/\/$/, '');
    const orgId = field('Demo org');
    if (!base || !login || !orgId) throw new Error(`the dev banner lacks the console, demo login or demo org:\n${banner}`);
    return { base, email: login[1]!, password: login[2]!, orgId, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** GET with the headers a browser sends, without decoding: the bytes the server put on the wire. */
function rawGet(url: string): Promise<{ status: number; encoding: string | undefined; body: Buffer }> {
  return new Promise((resolve, reject) => {
    get(url, { headers: { 'accept-encoding': 'gzip, deflate, br' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, encoding: res.headers['content-encoding'], body: Buffer.concat(chunks) }));
      res.on('error', reject);
    }).on('error', reject);
  });
}

/** What index.html makes the browser load before the first render: module scripts, module preloads, stylesheets. */
async function initialAssets(base: string): Promise<{ js: number; jsRaw: number; css: number; files: string[] }> {
  const index = await rawGet(`${base}/`);
  const html = (index.encoding === 'gzip' ? gunzipSync(index.body) : index.body).toString('utf8');
  const scripts = [...html.matchAll(/<script\b[^>]*\bsrc="([^"]+)"/g), ...html.matchAll(/<link\b[^>]*\brel="modulepreload"[^>]*\bhref="([^"]+)"/g)].map((m) => m[1]!);
  const styles = [...html.matchAll(/<link\b[^>]*\brel="stylesheet"[^>]*\bhref="([^"]+)"/g)].map((m) => m[1]!);
  const sent = async (href: string) => {
    const res = await rawGet(new URL(href, `${base}/`).href);
    if (res.status !== 200) throw new Error(`${href} answered ${res.status}`);
    const raw = res.encoding === 'gzip' ? gunzipSync(res.body) : res.body;
    // Cross-check against the build on disk: the served bytes are this file at gzip level 9.
    const local = readFileSync(path.join(root, 'web', 'dist', new URL(href, 'http://x/').pathname));
    const expected = gzipSync(local, { level: 9 }).length;
    if (res.encoding === 'gzip' && expected !== res.body.length) log(`${href}: served ${res.body.length} B gzipped, gzip -9 of web/dist gives ${expected} B`);
    return { wire: res.body.length, raw: raw.length, encoding: res.encoding ?? 'identity' };
  };
  let js = 0;
  let jsRaw = 0;
  let css = 0;
  const files: string[] = [];
  for (const href of scripts) {
    const s = await sent(href);
    js += s.wire;
    jsRaw += s.raw;
    files.push(`${href} ${s.raw} B, ${s.wire} B sent (${s.encoding})`);
  }
  for (const href of styles) {
    const s = await sent(href);
    css += s.wire;
    files.push(`${href} ${s.raw} B, ${s.wire} B sent (${s.encoding})`);
  }
  return { js, jsRaw, css, files };
}

/**
 * Runs in every page before its scripts (an init script, which the page's CSP does not govern):
 * records each <h1> when it enters the DOM and when the frame after it is painted, and every
 * growth of the live tokens' text with the host clock, for the bench to read back. Plain
 * JavaScript in a string: it runs in the browser, not under this project's Node typings.
 */
const PAGE_PROBE = `(() => {
  const probe = { headings: [], tokens: [] };
  window.__benchProbe = probe;
  const seen = new WeakSet();
  // The frame after a change: rAF runs before the paint, a message posted from it after.
  const afterPaint = (done) => requestAnimationFrame(() => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => done(performance.now());
    channel.port2.postMessage(null);
  });
  let shown = 0;
  new MutationObserver(() => {
    const now = performance.now();
    for (const h1 of document.querySelectorAll('h1')) {
      if (seen.has(h1)) continue;
      seen.add(h1);
      const entry = { text: h1.textContent || '', dom: now, painted: null };
      probe.headings.push(entry);
      afterPaint((t) => { entry.painted = t; });
    }
    // A step's live text, until its durable llm.completed event replaces it with the whole answer.
    let length = 0;
    for (const live of document.querySelectorAll('[data-testid="live-tokens"]')) length += (live.textContent || '').length;
    if (length === 0 && shown > 0 && document.querySelector('li[data-type="llm.completed"]')) length = Number.MAX_SAFE_INTEGER;
    if (length > shown) {
      shown = length;
      const entry = { at: performance.timeOrigin + now, painted: null, length };
      probe.tokens.push(entry);
      afterPaint((t) => { entry.painted = performance.timeOrigin + t; });
    } else if (length === 0) {
      shown = 0;
    }
  }).observe(document, { childList: true, subtree: true, characterData: true });
})();`;

interface Probe {
  headings: Array<{ text: string; dom: number; painted: number | null }>;
  tokens: Array<{ at: number; painted: number | null; length: number }>;
}
const readProbe = (page: Page) => page.evaluate('window.__benchProbe') as Promise<Probe>;

/** Page clock minus this process's clock, from the bracketing call with the shortest round trip. */
async function clockOffset(page: Page): Promise<{ offset: number; uncertainty: number }> {
  let best = { offset: 0, uncertainty: Infinity };
  for (let i = 0; i < 15; i++) {
    const before = hostNow();
    const inPage = (await page.evaluate('performance.timeOrigin + performance.now()')) as number;
    const after = hostNow();
    if ((after - before) / 2 < best.uncertainty) best = { offset: inPage - (before + after) / 2, uncertainty: (after - before) / 2 };
  }
  return best;
}

/** Where the time to the first screen went, from the page's navigation and resource timing (ms from navigation start). */
const NAVIGATION_STEPS = `(() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const at = (n) => Math.round(n);
  const steps = ['html ' + at(nav.responseEnd)];
  for (const r of performance.getEntriesByType('resource')) {
    const name = new URL(r.name).pathname.replace(/^\\/assets\\/|^\\//, '');
    steps.push(name + ' ' + at(r.startTime) + '–' + at(r.responseEnd));
  }
  steps.push('scripts run by ' + at(nav.domContentLoadedEventEnd));
  return steps.join(', ');
})()`;

/** Opens the console in a new context and waits for the heading; times in the page and on the wall. */
async function firstScreen(browser: Browser, base: string, heading: string, storageState?: Awaited<ReturnType<BrowserContext['storageState']>>) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...(storageState ? { storageState } : {}) });
  try {
    await context.addInitScript({ content: PAGE_PROBE });
    const page = await context.newPage();
    const began = performance.now();
    await page.goto(`${base}/`);
    await page.getByRole('heading', { level: 1, name: heading }).waitFor({ state: 'visible', timeout: 30_000 });
    const wall = performance.now() - began;
    let entry: Probe['headings'][number] | undefined;
    for (let i = 0; i < 50 && !entry?.painted; i++) {
      entry = (await readProbe(page)).headings.find((h) => h.text === heading);
      if (!entry?.painted) await page.waitForTimeout(20);
    }
    if (!entry?.painted) throw new Error(`the probe saw no painted <h1>${heading}</h1>`);
    return { dom: entry.dom, painted: entry.painted, wall, steps: (await page.evaluate(NAVIGATION_STEPS)) as string };
  } finally {
    await context.close();
  }
}

/** Reads a run's event stream as any API client would; each delta's cumulative length and arrival time. */
async function followRawStream(url: string, token: string, signal: AbortSignal) {
  const deltas: Array<{ at: number; length: number }> = [];
  const res = await fetch(url, { headers: { accept: 'text/event-stream', authorization: `Bearer ${token}` }, signal });
  if (!res.ok || !res.body) throw new Error(`the run's event stream answered ${res.status}`);
  const done = (async () => {
    const parser = new SseParser();
    const decoder = new TextDecoder();
    let length = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      const at = hostNow();
      for (const message of parser.feed(decoder.decode(chunk, { stream: true }))) {
        if (message.event === 'delta') {
          length += (JSON.parse(message.data) as { text: string }).text.length;
          deltas.push({ at, length });
        } else if (/^run\.(completed|failed|cancelled)$/.test((JSON.parse(message.data) as { type: string }).type)) {
          return (JSON.parse(message.data) as { type: string }).type;
        }
      }
    }
    return 'stream ended';
  })();
  return { deltas, done };
}

async function main() {
  const started = performance.now();
  const words = Array.from({ length: WORDS }, (_, i) => ['Thanks', 'for', 'asking', 'about', 'the', 'Pro', 'plan,', 'which', 'includes', 'priority', 'support'][i % 11]);
  const answer = words.join(' ');
  const llm = await startFakeLlm({ defaultReply: () => ({ kind: 'text', content: answer, delayMs: FIRST_TOKEN_DELAY_MS, chunkDelayMs: WORD_MS }) });
  let stack: DevStack | undefined;
  let browser: Browser | undefined;
  try {
    stack = await startDevStack(llm.url);
    log(`dev stack up in ${((performance.now() - started) / 1000).toFixed(0)} s; console on ${stack.base}`);
    const figures = new FigureLog('console');

    // 1. Initial JavaScript ------------------------------------------------------------------------
    const assets = await initialAssets(stack.base);
    for (const file of assets.files) log(`initial asset ${file}`);
    figures.add('initial-js', 'initial JavaScript, gzipped as served (scripts + module preloads of index.html)', 'kB', { op: '<=', value: 200 }).sample(assets.js / 1000);
    figures.add('initial-js-raw', 'initial JavaScript, uncompressed', 'kB').sample(assets.jsRaw / 1000);
    figures.add('initial-css', 'initial CSS, gzipped as served', 'kB').sample(assets.css / 1000);

    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: CHROMIUM_LAUNCH_ARGS });

    // The demo user's session, signed in once through the sign-in screen, for the signed-in rounds.
    const signInContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const signInPage = await signInContext.newPage();
    await signInPage.goto(`${stack.base}/`);
    await signInPage.getByLabel('Email').fill(stack.email);
    await signInPage.getByLabel('Password').fill(stack.password);
    await signInPage.getByRole('button', { name: 'Sign in' }).click();
    await signInPage.getByRole('heading', { level: 1, name: 'Agents' }).waitFor({ timeout: 30_000 });
    // The console remembers the org once the list confirms it (an effect after the render).
    await signInPage.waitForFunction("Object.keys(localStorage).some((k) => k.startsWith('console.org:'))");
    const session = await signInContext.storageState();
    // The same session in a browser that remembers no org: the path before a first visit's list answers.
    const sessionOnly = { ...session, origins: session.origins.map((o) => ({ ...o, localStorage: o.localStorage.filter((e) => !e.name.startsWith('console.org:')) })) };
    await signInContext.close();

    // 2. First screen ------------------------------------------------------------------------------
    const visitorPainted = figures.add('first-visitor', 'first screen painted after navigation, visitor (Sign in), in the page', 'ms', { op: '<=', value: 1000 });
    const visitorWall = figures.add('first-visitor-wall', 'first screen, visitor, wall time around page.goto', 'ms');
    const memberPainted = figures.add('first-member', 'first screen painted after navigation, signed in (Agents of the remembered org), in the page', 'ms', { op: '<=', value: 1000 });
    const memberWall = figures.add('first-member-wall', 'first screen, signed in, wall time around page.goto', 'ms');
    const unrememberedPainted = figures.add('first-member-no-org', 'first screen painted, signed in, no org remembered (Agents after GET /v1/orgs), in the page', 'ms');
    for (let round = 1; round <= ROUNDS; round++) {
      const visitor = await firstScreen(browser, stack.base, 'Sign in');
      const member = await firstScreen(browser, stack.base, 'Agents', session);
      const unremembered = await firstScreen(browser, stack.base, 'Agents', sessionOnly);
      visitorPainted.sample(visitor.painted);
      visitorWall.sample(visitor.wall);
      memberPainted.sample(member.painted);
      memberWall.sample(member.wall);
      unrememberedPainted.sample(unremembered.painted);
      log(
        `round ${round}: Sign in in the DOM at ${ms(visitor.dom)}, painted ${ms(visitor.painted)} (wall ${ms(visitor.wall)}); ` +
          `Agents in the DOM at ${ms(member.dom)}, painted ${ms(member.painted)} (wall ${ms(member.wall)}); ` +
          `no org remembered: painted ${ms(unremembered.painted)}`,
      );
      log(`round ${round}: visitor's page: ${visitor.steps}`);
      log(`round ${round}: signed-in page: ${member.steps}`);
    }

    // 3. Live tokens -------------------------------------------------------------------------------
    const tokenP50 = figures.add('token-p50', `live token shown in the console after the raw stream, p50 of ${WORDS} words ${WORD_MS} ms apart`, 'ms');
    const tokenP95 = figures.add('token-p95', 'live token shown after the raw stream, p95', 'ms', { op: '<=', value: 100 });
    const tokenMax = figures.add('token-max', 'live token shown after the raw stream, max', 'ms', { op: '<=', value: 100 });
    const paintedP95 = figures.add('token-painted-p95', 'live token painted (frame after the DOM change) after the raw stream, p95', 'ms');
    const followContext = await browser.newContext({ viewport: { width: 1280, height: 900 }, storageState: session });
    await followContext.addInitScript({ content: PAGE_PROBE });
    const page = await followContext.newPage();
    await page.goto(`${stack.base}/`);
    await page.getByRole('heading', { level: 1, name: 'Agents' }).waitFor({ timeout: 30_000 });
    // The page's own bearer token (supabase-js keeps the session under sb-<project>-auth-token).
    const token = (await page.evaluate(`(() => {
      const key = Object.keys(localStorage).find((k) => /^sb-.*-auth-token$/.test(k));
      return key ? JSON.parse(localStorage.getItem(key)).access_token : null;
    })()`)) as string | null;
    if (!token) throw new Error('the console keeps no Supabase session in localStorage');
    const agents = (await (await fetch(`${stack.base}/v1/orgs/${stack.orgId}/agents?limit=1`, { headers: { authorization: `Bearer ${token}` } })).json()) as { items: Array<{ id: string }> };
    const agentId = agents.items[0]!.id;
    for (let round = 1; round <= ROUNDS; round++) {
      const res = await fetch(`${stack.base}/v1/orgs/${stack.orgId}/agents/${agentId}/runs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ input: `Bench round ${round}: what does the Pro plan include?` }),
      });
      const run = (await res.json()) as { id: string };
      if (res.status !== 201) throw new Error(`starting a run answered ${res.status}: ${JSON.stringify(run)}`);
      const aborter = new AbortController();
      const raw = await followRawStream(`${stack.base}/v1/orgs/${stack.orgId}/runs/${run.id}/events`, token, aborter.signal);
      await page.evaluate('window.__benchProbe.tokens.length = 0');
      await page.goto(`${stack.base}/#/orgs/${stack.orgId}/runs/${run.id}`);
      await page.getByRole('heading', { level: 1, name: 'Run' }).waitFor({ timeout: 30_000 });
      const ended = await Promise.race([raw.done, new Promise<string>((r) => setTimeout(() => r('timed out'), 120_000))]);
      aborter.abort();
      if (ended !== 'run.completed') throw new Error(`round ${round}: the run ended with ${ended}`);
      await page.getByText('Run completed').waitFor({ timeout: 30_000 });
      const { offset, uncertainty } = await clockOffset(page);
      const shown = (await readProbe(page)).tokens;
      const gaps: number[] = [];
      const paintGaps: number[] = [];
      let missed = 0;
      for (const delta of raw.deltas) {
        const seen = shown.find((s) => s.length >= delta.length);
        if (!seen) {
          missed++;
          continue;
        }
        gaps.push(seen.at - offset - delta.at);
        if (seen.painted !== null) paintGaps.push(seen.painted - offset - delta.at);
      }
      tokenP50.sample(percentile(gaps, 50));
      tokenP95.sample(percentile(gaps, 95));
      tokenMax.sample(Math.max(...gaps));
      paintedP95.sample(percentile(paintGaps, 95));
      log(
        `round ${round}: ${raw.deltas.length} deltas on the raw stream, ${gaps.length} seen in the console (${missed} never): ` +
          `p50 ${ms(percentile(gaps, 50))}, p95 ${ms(percentile(gaps, 95))}, max ${ms(Math.max(...gaps))}; painted p95 ${ms(percentile(paintGaps, 95))}; ` +
          `clock offset page − node ${ms(offset)} ± ${ms(uncertainty)}`,
      );
    }
    await followContext.close();
    figures.finish();
    log(`load average (1, 5, 15 min) at the end: ${os.loadavg().map((l) => l.toFixed(1)).join(', ')} on ${os.cpus().length} cores`);
  } finally {
    await browser?.close();
    await stack?.stop();
    await llm.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
