/**
 * The sandbox CRM of `npm run dev`: the Kommo fake (scripts/stack/crm-fakes/kommo.ts, the same one
 * the tests use) with a demo lead and its chat (a talk), plus three routes for people to play the
 * lead and the salesperson. Labelled a sandbox wherever it is shown; it is not Kommo.
 *
 * - `POST /sandbox/leads/:leadId/messages` `{ "text" }`: the lead writes; the message is stored in
 *   the lead's talk and the sandbox delivers Kommo's real `message[add]` webhook (form-encoded, the
 *   connection's URL secret) to the API.
 * - `POST /sandbox/leads/:leadId/manager-messages` `{ "text" }`: a salesperson writes in the thread
 *   (stored as an outgoing message of a user, and delivered as Kommo does, `type=outgoing`).
 * - `GET /sandbox/leads/:leadId/messages`: the thread as the CRM holds it, oldest first:
 *   `[{ id, direction: "in" | "out", author: "lead" | "agent" | "manager", text, createdAt }]`.
 * The agent's replies arrive through the Kommo API the platform calls (`send_message` on the talk,
 * or the Salesbot), exactly as they would on a real account.
 */
import { z } from 'zod';
import type { FakeContext } from './crm-fakes/common.js';
import { startFakeKommo, type FakeKommo } from './crm-fakes/kommo.js';
import { kommoChatWebhookBody } from './crm-fakes/kommo-talks.js';

export interface SandboxCrmOptions {
  /** Listen here (0: any free port). */
  port?: number;
  /** The long-lived token the demo connection stores. */
  accessToken: string;
  /** Where Kommo would deliver the account's webhooks (the API's URL for the connection, with its secret). */
  webhookUrl: string;
  log?: (msg: string) => void;
  /** Leads in the account (default 3, a readable demo); `npm run bench:conversations` needs one per conversation. */
  leads?: number;
  /** Kommo's monthly `send_message` quota (default the fake's 500); the benchmark's thousand conversations would exhaust it. */
  monthlySendQuota?: number;
}

export interface SandboxCrm {
  url: string;
  kommo: FakeKommo;
  /** The demo lead (a Kommo lead id), which has an open chat. */
  demoLeadId: number;
  close(): Promise<void>;
}

export interface SandboxMessage {
  id: string;
  direction: 'in' | 'out';
  author: 'lead' | 'agent' | 'manager';
  text: string;
  createdAt: string;
}

const textBody = z.strictObject({ text: z.string().trim().min(1).max(10_000) });
const ORIGIN = 'telegram';

export async function startSandboxCrm(opts: SandboxCrmOptions): Promise<SandboxCrm> {
  const log = opts.log ?? (() => {});
  // Messages a salesperson wrote, told apart from the agent's (both are a user's in Kommo).
  const managerMessages = new Set<string>();
  // Set once the fake listens; the routes below run only after that.
  const fake: { kommo?: FakeKommo } = {};

  const talkOf = (leadId: number): number => {
    const talks = fake.kommo!.talks;
    const open = [...talks.talks.values()].find((t) => t.leadId === leadId && !t.closed);
    return open?.id ?? talks.addTalk({ leadId, origin: ORIGIN });
  };

  /** Kommo's `message[add]` account webhook for a message in the lead's talk. */
  async function deliver(leadId: number, talkId: number, message: { id: string; text: string; type: 'incoming' | 'outgoing'; createdAtMs: number }): Promise<number | null> {
    const body = kommoChatWebhookBody({
      leadId,
      talkId,
      text: message.text,
      type: message.type,
      id: message.id,
      createdAtMs: message.createdAtMs,
      origin: ORIGIN,
      authorName: message.type === 'incoming' ? 'Demo lead' : 'Sandbox manager',
      accountId: fake.kommo!.accountId,
    });
    try {
      const res = await fetch(opts.webhookUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body, signal: AbortSignal.timeout(10_000) });
      if (!res.ok) log(`webhook for lead ${leadId} answered ${res.status}`);
      return res.status;
    } catch (err) {
      log(`webhook for lead ${leadId} could not be delivered: ${String(err)}`);
      return null;
    }
  }

  const thread = (leadId: number): SandboxMessage[] => {
    const talks = [...fake.kommo!.talks.talks.values()].filter((t) => t.leadId === leadId);
    return talks
      .flatMap((t) => t.messages)
      .sort((a, b) => a.createdAtMs - b.createdAtMs)
      .map((m) => ({
        id: m.id,
        direction: m.type === 'incoming' ? 'in' : 'out',
        author: m.type === 'incoming' ? 'lead' : managerMessages.has(m.id) ? 'manager' : 'agent',
        text: m.text,
        createdAt: new Date(m.createdAtMs).toISOString(),
      }));
  };

  const sandboxRoutes = async (ctx: FakeContext): Promise<boolean> => {
    const m = /^\/sandbox\/leads\/([^/]+)\/(messages|manager-messages)$/.exec(ctx.url.pathname);
    if (!m) return false;
    const method = ctx.req.method ?? 'GET';
    const problem = (status: number, title: string, detail: string) => ctx.send(status, { type: 'about:blank', title, status, detail }, { 'content-type': 'application/problem+json' });
    const leadId = /^\d{1,15}$/.test(m[1]!) ? Number(m[1]) : NaN;
    if (!Number.isSafeInteger(leadId) || !fake.kommo!.store.table('leads').has(leadId)) return problem(404, 'Not Found', `the sandbox has no lead ${m[1]}`), true;
    if (method === 'GET' && m[2] === 'messages') return ctx.send(200, thread(leadId)), true;
    if (method !== 'POST') return problem(405, 'Method Not Allowed', `${method} is not supported here`), true;
    let parsed;
    try {
      parsed = textBody.safeParse(JSON.parse(ctx.body || 'null'));
    } catch {
      return problem(400, 'Bad Request', 'the body must be JSON: {"text": "…"}'), true;
    }
    if (!parsed.success) return problem(400, 'Bad Request', 'text: a non-empty string of at most 10,000 characters (and nothing else)'), true;
    const talkId = talkOf(leadId);
    const fromLead = m[2] === 'messages';
    const id = fake.kommo!.talks.addMessage(talkId, { type: fromLead ? 'incoming' : 'outgoing', text: parsed.data.text, author: fromLead ? 'external' : 'internal' });
    if (!fromLead) managerMessages.add(id);
    const stored = fake.kommo!.talks.talks.get(talkId)!.messages.find((x) => x.id === id)!;
    const webhookStatus = await deliver(leadId, talkId, { id, text: stored.text, type: stored.type, createdAtMs: stored.createdAtMs });
    ctx.send(201, { ...thread(leadId).find((x) => x.id === id)!, webhook: { delivered: webhookStatus !== null && webhookStatus < 300, status: webhookStatus } });
    return true;
  };

  const kommo = await startFakeKommo({
    // A small, readable account; no per-second limit, so a newcomer never sees a 429.
    dataset: { leads: opts.leads ?? 3, contacts: 3, companies: 1, users: 2 },
    rateLimitPerSecond: null,
    ...(opts.monthlySendQuota !== undefined ? { talks: { monthlyQuota: opts.monthlySendQuota } } : {}),
    ...(opts.port !== undefined ? { port: opts.port } : {}),
    extraRoutes: sandboxRoutes,
  });
  fake.kommo = kommo;
  kommo.addLongLivedToken(opts.accessToken);
  const demoLeadId = [...kommo.store.table('leads').keys()].sort((a, b) => a - b)[0]!;
  talkOf(demoLeadId);
  return { url: kommo.url, kommo, demoLeadId, close: () => fake.kommo!.close() };
}
