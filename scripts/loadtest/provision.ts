/**
 * The tenants a load test acts as, created through the public API only (so it works against
 * any stack: the dev stack, the test stack, staging): each org is founded by a fresh user, who
 * invites the others; each org gets an agent, a few runs to read and, when the server has CRM
 * enabled, a Kommo connection whose webhook URL the test posts to.
 */
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';

export interface ProvisionOptions {
  baseUrl: string;
  jwtSecret: string;
  jwtIssuer?: string | undefined;
  orgs: number;
  usersPerOrg: number;
  /** Runs started per org before the load, so reads and probes have ids from the first second. */
  seedRuns: number;
  agentModel: string;
  webhooks: 'auto' | 'on' | 'off';
  kommoAccountUrl: string;
  /** A label in every org name, so an operator can find and delete what a run left behind. */
  label: string;
  log: (msg: string) => void;
}

export interface LoadUser {
  userId: string;
  token: string;
}

export interface LoadOrg {
  orgId: string;
  agentId: string;
  users: LoadUser[];
  /** Run ids of this org (grows during the load as runs are started). */
  runIds: string[];
  /** Path and query of the org's Kommo webhook (carries the URL secret), when CRM is enabled. */
  webhookPath?: string;
}

export interface Provisioned {
  orgs: LoadOrg[];
  webhooksSkipped?: string;
}

export class ProvisionError extends Error {}

async function signToken(opts: ProvisionOptions, userId: string, email: string): Promise<string> {
  const jwt = new SignJWT({ role: 'authenticated', email })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(userId)
    .setAudience('authenticated')
    .setIssuedAt()
    // Long enough for a full-scale run plus provisioning and clean-up.
    .setExpirationTime('2h');
  if (opts.jwtIssuer) jwt.setIssuer(opts.jwtIssuer);
  return jwt.sign(new TextEncoder().encode(opts.jwtSecret));
}

async function call(baseUrl: string, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(new URL(path, baseUrl), {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    json = { raw: text.slice(0, 200) };
  }
  return { status: res.status, json };
}

async function expectStatus(baseUrl: string, token: string, method: string, path: string, status: number, body?: unknown): Promise<Record<string, unknown>> {
  const res = await call(baseUrl, token, method, path, body);
  if (res.status !== status) throw new ProvisionError(`${method} ${path} answered ${res.status}, expected ${status}: ${JSON.stringify(res.json).slice(0, 300)}`);
  return res.json;
}

async function provisionOrg(opts: ProvisionOptions, index: number): Promise<LoadOrg & { crm: 'created' | 'disabled' }> {
  const users: LoadUser[] = [];
  for (let u = 0; u < opts.usersPerOrg; u++) {
    const userId = randomUUID();
    users.push({ userId, token: await signToken(opts, userId, `loadtest-${userId}@example.test`) });
  }
  const owner = users[0]!;
  const org = await expectStatus(opts.baseUrl, owner.token, 'POST', '/v1/orgs', 201, { name: `${opts.label} org ${index + 1}` });
  const orgId = String(org.id);
  for (const member of users.slice(1)) {
    const invite = await expectStatus(opts.baseUrl, owner.token, 'POST', `/v1/orgs/${orgId}/invites`, 201, { email: `loadtest-${member.userId}@example.test`, role: 'member' });
    await expectStatus(opts.baseUrl, member.token, 'POST', '/v1/invites/accept', 200, { token: invite.token });
  }
  const agent = await expectStatus(opts.baseUrl, owner.token, 'POST', `/v1/orgs/${orgId}/agents`, 201, {
    name: `${opts.label} agent`,
    model: opts.agentModel,
    instructions: 'Load test agent. Answer in one word.',
    maxSteps: 1,
  });
  const agentId = String(agent.id);
  const runIds: string[] = [];
  for (let r = 0; r < opts.seedRuns; r++) {
    const run = await expectStatus(opts.baseUrl, users[r % users.length]!.token, 'POST', `/v1/orgs/${orgId}/agents/${agentId}/runs`, 201, { input: `${opts.label} seed run ${r}` });
    runIds.push(String(run.id));
  }
  if (opts.webhooks === 'off') return { orgId, agentId, users, runIds, crm: 'disabled' };
  const connection = await call(opts.baseUrl, owner.token, 'POST', `/v1/orgs/${orgId}/crm/connections`, {
    provider: 'kommo',
    name: `${opts.label} Kommo`,
    auth: { kind: 'token', token: `loadtest-token-${randomUUID()}`, accountUrl: opts.kommoAccountUrl },
  });
  // The CRM routes exist only when the server has ENCRYPTION_KEYS (docs/configuration.md).
  if (connection.status === 404 && opts.webhooks === 'auto') return { orgId, agentId, users, runIds, crm: 'disabled' };
  if (connection.status !== 201) throw new ProvisionError(`creating a Kommo connection answered ${connection.status}: ${JSON.stringify(connection.json).slice(0, 300)}`);
  const url = new URL(String(connection.json.webhookUrl));
  return { orgId, agentId, users, runIds, webhookPath: `${url.pathname}${url.search}`, crm: 'created' };
}

export async function provision(opts: ProvisionOptions): Promise<Provisioned> {
  const orgs: Array<LoadOrg & { crm: string }> = [];
  // A few at a time: provisioning is set-up, not the load being measured.
  for (let i = 0; i < opts.orgs; i += 4) {
    orgs.push(...(await Promise.all(Array.from({ length: Math.min(4, opts.orgs - i) }, (_, k) => provisionOrg(opts, i + k)))));
  }
  opts.log(`provisioned ${orgs.length} orgs × ${opts.usersPerOrg} users, ${opts.seedRuns} runs each`);
  const webhooksSkipped = orgs.some((o) => o.crm === 'disabled')
    ? opts.webhooks === 'off'
      ? 'turned off (--webhooks off)'
      : 'the server has no CRM routes (POST …/crm/connections answered 404; set ENCRYPTION_KEYS to enable CRM)'
    : undefined;
  return { orgs, ...(webhooksSkipped ? { webhooksSkipped } : {}) };
}

/** Deletes what provisioning created (the owner deletes each org with everything it owns). */
export async function cleanUp(baseUrl: string, orgs: LoadOrg[], log: (msg: string) => void): Promise<void> {
  let failed = 0;
  for (const org of orgs) {
    const res = await call(baseUrl, org.users[0]!.token, 'DELETE', `/v1/orgs/${org.orgId}`);
    if (res.status >= 300) failed++;
  }
  log(failed === 0 ? `deleted the ${orgs.length} load test orgs` : `could not delete ${failed} of ${orgs.length} load test orgs`);
}
