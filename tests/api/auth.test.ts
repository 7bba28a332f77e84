import { createHmac, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import type pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';
import { connectTestTemporal, testLogger, type TestTemporal } from '../support/temporal.js';

// Bearer credentials: Supabase JWTs (HS256 secret, ES256/RS256 from a JWKS served by a local
// HTTP server with keys made here) and org API keys. Every forged or stale credential answers
// 401 before any tenant query runs: the app pool records every statement it is sent.

const ISSUER = 'https://project-ref.supabase.co/auth/v1';
const PROBLEM = 'https://gpt-agent-platform.dev/problems/';

let temporal: TestTemporal;
let pool: pg.Pool;
let admin: pg.Pool;
let app: App;
let jwksServer: http.Server;
let jwksRequests = 0;
const statements: string[] = [];

let es256: { privateKey: CryptoKey; jwk: JWK };
let rs256: { privateKey: CryptoKey; publicPem: string; jwk: JWK };
let unpublished: { privateKey: CryptoKey };

let orgId: string;
let userId: string;

async function keyPair(alg: 'ES256' | 'RS256', kid: string) {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

beforeAll(async () => {
  const es = await keyPair('ES256', 'es-1');
  const rs = await keyPair('RS256', 'rs-1');
  es256 = es;
  rs256 = { ...rs, publicPem: await exportSPKI(rs.publicKey) };
  unpublished = await keyPair('ES256', 'es-unknown');

  jwksServer = http.createServer((req, res) => {
    jwksRequests++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: [es256.jwk, rs256.jwk] }));
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/auth/v1/.well-known/jwks.json`;

  temporal = await connectTestTemporal();
  admin = adminPool();
  pool = appPool();
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as { query: unknown }).query = (...args: unknown[]) => {
      const first = args[0];
      statements.push(typeof first === 'string' ? first : String((first as { text?: unknown })?.text));
      return query(...args);
    };
  });
  app = await buildApp({
    pool,
    temporal: temporal.client,
    logger: testLogger,
    auth: { jwtSecret: TEST_JWT_SECRET, issuer: ISSUER, jwksUrl },
  });

  const org = await createOrgWithMembers(admin, ['owner']);
  orgId = org.orgId;
  userId = org.userWithRole('owner');
});

afterAll(async () => {
  await app?.close();
  await temporal?.close();
  await pool?.end();
  await admin?.end();
  await new Promise((resolve) => jwksServer?.close(resolve));
});

beforeEach(() => {
  statements.length = 0;
});

const getOrg = (credential: string, org = orgId) =>
  app.inject({ method: 'GET', url: `/v1/orgs/${org}`, headers: { authorization: `Bearer ${credential}` } });

function sign(key: CryptoKey | Uint8Array, alg: string, opts: { kid?: string; aud?: string; iss?: string; exp?: string | number; sub?: string } = {}) {
  return new SignJWT({ role: 'authenticated' })
    .setProtectedHeader({ alg, typ: 'JWT', ...(opts.kid ? { kid: opts.kid } : {}) })
    .setSubject(opts.sub ?? userId)
    .setAudience(opts.aud ?? 'authenticated')
    .setIssuer(opts.iss ?? ISSUER)
    .setIssuedAt()
    .setExpirationTime(opts.exp ?? '1h')
    .sign(key);
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

function expectUnauthenticatedWithoutTenantQueries(res: Awaited<ReturnType<typeof getOrg>>) {
  expect(res.statusCode).toBe(401);
  expect(res.headers['content-type']).toContain('application/problem+json');
  expect(res.json().type).toBe(`${PROBLEM}unauthenticated`);
  // No transaction was opened as any principal: no role switch, no tenant table.
  expect(statements.filter((s) => /set_config|public\./.test(s))).toEqual([]);
}

describe('valid credentials', () => {
  it('accepts an HS256 token signed with the project secret', async () => {
    const res = await getOrg(await signUserToken(userId, { issuer: ISSUER }));
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ id: orgId, role: 'owner' });
    // The statement recorder sees real requests, so its silence in the negative cases means something.
    expect(statements.some((s) => s.includes('set_config'))).toBe(true);
  });

  it.each([
    ['ES256', () => es256.privateKey, 'es-1'],
    ['RS256', () => rs256.privateKey, 'rs-1'],
  ] as const)('accepts a %s token whose key is in the JWKS, fetching the JWKS once and caching it', async (alg, key, kid) => {
    const before = jwksRequests;
    for (let i = 0; i < 3; i++) {
      const res = await getOrg(await sign(key(), alg, { kid }));
      expect(res.statusCode).toBe(200);
    }
    expect(jwksRequests - before).toBeLessThanOrEqual(1);
  });
});

describe('forged or stale JWTs answer 401 without touching tenant tables', () => {
  it('a token accepted moments ago is refused once it expires (verified tokens are remembered only until exp)', async () => {
    const exp = Math.floor(Date.now() / 1000) + 2;
    const token = await signUserToken(userId, { issuer: ISSUER, expiresIn: exp });
    expect((await getOrg(token)).statusCode).toBe(200);
    expect((await getOrg(token)).statusCode).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, exp * 1000 - Date.now() + 100));
    const res = await getOrg(token);
    expect(res.statusCode).toBe(401);
    expect(res.json().detail).toMatch(/expired/);
  });

  it('alg none', async () => {
    const token = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub: userId, aud: 'authenticated', iss: ISSUER, exp: Math.floor(Date.now() / 1000) + 3600 })}.`;
    expectUnauthenticatedWithoutTenantQueries(await getOrg(token));
  });

  it('HS256 "signed" with the RS256 public key (key confusion)', async () => {
    const header = b64url({ alg: 'HS256', typ: 'JWT', kid: 'rs-1' });
    const payload = b64url({ sub: userId, aud: 'authenticated', iss: ISSUER, exp: Math.floor(Date.now() / 1000) + 3600 });
    const signature = createHmac('sha256', rs256.publicPem).update(`${header}.${payload}`).digest('base64url');
    expectUnauthenticatedWithoutTenantQueries(await getOrg(`${header}.${payload}.${signature}`));
  });

  it('expired', async () => {
    const res = await getOrg(await sign(es256.privateKey, 'ES256', { kid: 'es-1', exp: Math.floor(Date.now() / 1000) - 60 }));
    expectUnauthenticatedWithoutTenantQueries(res);
    expect(res.json().detail).toMatch(/expired/);
  });

  it('wrong audience', async () => {
    expectUnauthenticatedWithoutTenantQueries(await getOrg(await sign(es256.privateKey, 'ES256', { kid: 'es-1', aud: 'service_role' })));
  });

  it('wrong issuer', async () => {
    expectUnauthenticatedWithoutTenantQueries(await getOrg(await sign(es256.privateKey, 'ES256', { kid: 'es-1', iss: 'https://evil.example/auth/v1' })));
    expectUnauthenticatedWithoutTenantQueries(await getOrg(await signUserToken(userId, { issuer: 'https://evil.example/auth/v1' })));
  });

  it('unknown kid', async () => {
    expectUnauthenticatedWithoutTenantQueries(await getOrg(await sign(unpublished.privateKey, 'ES256', { kid: 'es-unknown' })));
  });

  it('a published kid with a signature from another key', async () => {
    expectUnauthenticatedWithoutTenantQueries(await getOrg(await sign(unpublished.privateKey, 'ES256', { kid: 'es-1' })));
  });

  it('tampered payload', async () => {
    const token = await sign(es256.privateKey, 'ES256', { kid: 'es-1' });
    const [header, , signature] = token.split('.');
    const forged = b64url({ sub: randomUUID(), role: 'authenticated', aud: 'authenticated', iss: ISSUER, exp: Math.floor(Date.now() / 1000) + 3600 });
    expectUnauthenticatedWithoutTenantQueries(await getOrg(`${header}.${forged}.${signature}`));
  });

  it('HS256 signed with another secret', async () => {
    expectUnauthenticatedWithoutTenantQueries(await getOrg(await signUserToken(userId, { issuer: ISSUER, secret: 'another-secret-another-secret-another-secret' })));
  });

  it('no or malformed Authorization header', async () => {
    expectUnauthenticatedWithoutTenantQueries(await app.inject({ method: 'GET', url: `/v1/orgs/${orgId}` }));
    expectUnauthenticatedWithoutTenantQueries(await getOrg('not-a-token'));
  });
});

describe('API keys', () => {
  async function createKey(scope: 'member' | 'admin' = 'member') {
    const token = await signUserToken(userId, { issuer: ISSUER });
    const res = await app.inject({
      method: 'POST',
      url: `/v1/orgs/${orgId}/api-keys`,
      headers: { authorization: `Bearer ${token}` },
      payload: { name: `key ${scope}`, scope },
    });
    expect(res.statusCode).toBe(201);
    return res.json() as { id: string; key: string };
  }

  it('a live key authenticates and its last use is tracked', async () => {
    const { id, key } = await createKey();
    expect((await getOrg(key)).statusCode).toBe(200);
    const { rows } = await admin.query(`select last_used_at from public.api_keys where id = $1`, [id]);
    expect(rows[0]?.last_used_at).toBeInstanceOf(Date);
  });

  it('a revoked key answers 401 without touching tenant tables', async () => {
    const { id, key } = await createKey();
    await admin.query(`update public.api_keys set revoked_at = now() where id = $1`, [id]);
    statements.length = 0;
    expectUnauthenticatedWithoutTenantQueries(await getOrg(key));
  });

  it("a key used on another org's path answers 401, whether or not that org exists", async () => {
    const { key } = await createKey('admin');
    const other = await createOrgWithMembers(admin, ['owner']);
    statements.length = 0;
    expectUnauthenticatedWithoutTenantQueries(await getOrg(key, other.orgId));
    expectUnauthenticatedWithoutTenantQueries(await getOrg(key, randomUUID()));
  });

  it("a key acts with its creator's standing: an admin's keys stop working when the admin is demoted or removed", async () => {
    const org = await createOrgWithMembers(admin, ['owner', 'admin']);
    const as = async (user: string) => ({ authorization: `Bearer ${await signUserToken(user, { issuer: ISSUER })}` });
    const creator = org.userWithRole('admin');
    const mint = async (scope: 'member' | 'admin') =>
      (await app.inject({ method: 'POST', url: `/v1/orgs/${org.orgId}/api-keys`, headers: await as(creator), payload: { name: `by admin ${scope}`, scope } })).json().key as string;
    const adminKey = await mint('admin');
    const memberKey = await mint('member');
    expect((await getOrg(adminKey, org.orgId)).statusCode).toBe(200);

    const demote = await app.inject({ method: 'PATCH', url: `/v1/orgs/${org.orgId}/members/${creator}`, headers: await as(org.userWithRole('owner')), payload: { role: 'member' } });
    expect(demote.statusCode).toBe(200);
    statements.length = 0;
    expectUnauthenticatedWithoutTenantQueries(await getOrg(adminKey, org.orgId));
    // A member key needs only what its creator still is.
    expect((await getOrg(memberKey, org.orgId)).statusCode).toBe(200);

    const remove = await app.inject({ method: 'DELETE', url: `/v1/orgs/${org.orgId}/members/${creator}`, headers: await as(org.userWithRole('owner')) });
    expect(remove.statusCode).toBe(204);
    statements.length = 0;
    expectUnauthenticatedWithoutTenantQueries(await getOrg(memberKey, org.orgId));
  });

  it('an admin key invites and manages members but never makes a human admin or owner', async () => {
    const { key } = await createKey('admin');
    const headers = { authorization: `Bearer ${key}` };
    const other = await createOrgWithMembers(admin, ['member']);
    const member = other.userWithRole('member');
    await admin.query(`insert into public.organization_members (org_id, user_id, role) values ($1, $2, 'member')`, [orgId, member]);

    const inviteAdmin = await app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/invites`, headers, payload: { email: `${randomUUID()}@example.test`, role: 'admin' } });
    expect(inviteAdmin.statusCode).toBe(403);
    expect((await app.inject({ method: 'POST', url: `/v1/orgs/${orgId}/invites`, headers, payload: { email: `${randomUUID()}@example.test`, role: 'member' } })).statusCode).toBe(201);
    for (const role of ['admin', 'owner']) {
      const promote = await app.inject({ method: 'PATCH', url: `/v1/orgs/${orgId}/members/${member}`, headers, payload: { role } });
      expect(promote.statusCode, role).toBe(403);
    }
    const { rows } = await admin.query(`select role from public.organization_members where org_id = $1 and user_id = $2`, [orgId, member]);
    expect(rows).toEqual([{ role: 'member' }]);
  });

  it('unknown and malformed keys answer 401', async () => {
    expectUnauthenticatedWithoutTenantQueries(await getOrg(`gap_live_AAAAAAAA_${'A'.repeat(43)}`));
    expectUnauthenticatedWithoutTenantQueries(await getOrg('gap_live_short'));
  });
});
