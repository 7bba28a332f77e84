/**
 * A sandbox of Supabase Auth (GoTrue) on loopback, for `npm run dev` and the tests: Supabase Auth
 * cannot run on our machines, and the console signs in with the unmodified `@supabase/supabase-js`.
 *
 * It speaks the part of GoTrue's HTTP API that supabase-js uses for email and password:
 *   POST /auth/v1/signup                              (autoconfirmed: answers with a session)
 *   POST /auth/v1/token?grant_type=password           (email + password)
 *   POST /auth/v1/token?grant_type=refresh_token      (refresh tokens rotate; a used one is refused)
 *   GET  /auth/v1/user                                (the user of a valid access token)
 *   POST /auth/v1/logout?scope=global|local|others    (revokes refresh tokens, 204)
 *   GET  /auth/v1/settings                            (which providers are enabled: email only)
 * Access tokens are HS256 JWTs with Supabase's claims, signed with the project JWT secret the API
 * verifies. Every request must carry the anon key as `apikey`, as Supabase's gateway requires.
 * Errors use the 2024-01-01 API version's shape (`{ code, message }` plus the legacy `error_code`
 * and `msg`), which supabase-js turns into an AuthApiError with that code.
 *
 * Users live in memory, and in `stateFile` when given so sign-ups survive a dev restart.
 * Importing this module has no side effects.
 */
import { randomBytes, randomUUID, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { jwtVerify, SignJWT } from 'jose';

const scrypt = promisify(scryptCb) as (password: string, salt: Buffer, keylen: number) => Promise<Buffer>;

export interface SandboxAuthUser {
  id: string;
  email: string;
  password: string;
}

export interface SandboxAuthOptions {
  /** The Supabase project JWT secret the API verifies (SUPABASE_JWT_SECRET). */
  jwtSecret: string;
  host?: string;
  /** 0 (default): any free port. */
  port?: number;
  /** Users that exist from the start (the dev demo user), with fixed ids. */
  users?: SandboxAuthUser[];
  /** JSON file the signed-up users are kept in (dev only: hashed passwords, no tokens). */
  stateFile?: string;
  /** Access token lifetime in seconds (GoTrue's default: 3600). */
  accessTokenSeconds?: number;
}

export interface SandboxAuth {
  /** The SUPABASE_URL of the sandbox, e.g. http://127.0.0.1:PORT */
  url: string;
  /** The SUPABASE_ANON_KEY: an HS256 JWT with role `anon`, as Supabase issues. */
  anonKey: string;
  /** Every request received, for tests asserting what the client sent. */
  requests: Array<{ method: string; path: string; grantType: string | null }>;
  addUser(user: SandboxAuthUser): Promise<void>;
  close(): Promise<void>;
}

interface StoredUser {
  id: string;
  email: string;
  passwordHash: string;
  salt: string;
  userMetadata: Record<string, unknown>;
  createdAt: string;
  lastSignInAt: string | null;
}

interface RefreshToken {
  userId: string;
  sessionId: string;
  revoked: boolean;
}

const MIN_PASSWORD_LENGTH = 6;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

class AuthError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

async function hashPassword(password: string, salt: Buffer): Promise<Buffer> {
  return scrypt(password, salt, 32);
}

export async function startSandboxAuth(options: SandboxAuthOptions): Promise<SandboxAuth> {
  const secret = new TextEncoder().encode(options.jwtSecret);
  const accessTokenSeconds = options.accessTokenSeconds ?? 3600;
  const usersByEmail = new Map<string, StoredUser>();
  const refreshTokens = new Map<string, RefreshToken>();
  const revokedSessions = new Set<string>();
  const requests: SandboxAuth['requests'] = [];
  let baseUrl = '';

  if (options.stateFile) {
    try {
      const saved = JSON.parse(await readFile(options.stateFile, 'utf8')) as { users: StoredUser[] };
      for (const user of saved.users) usersByEmail.set(user.email, user);
    } catch {
      // first start
    }
  }
  const persist = async () => {
    if (options.stateFile) await writeFile(options.stateFile, JSON.stringify({ users: [...usersByEmail.values()] }, null, 2), { mode: 0o600 });
  };

  async function createUser(email: string, password: string, id: string = randomUUID(), userMetadata: Record<string, unknown> = {}): Promise<StoredUser> {
    const salt = randomBytes(16);
    const user: StoredUser = {
      id,
      email,
      passwordHash: (await hashPassword(password, salt)).toString('base64'),
      salt: salt.toString('base64'),
      userMetadata,
      createdAt: new Date().toISOString(),
      lastSignInAt: null,
    };
    usersByEmail.set(email, user);
    await persist();
    return user;
  }

  const anonKey = await new SignJWT({ role: 'anon' })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer('supabase-sandbox')
    .setIssuedAt()
    .setExpirationTime('10y')
    .sign(secret);

  function userJson(user: StoredUser) {
    return {
      id: user.id,
      aud: 'authenticated',
      role: 'authenticated',
      email: user.email,
      email_confirmed_at: user.createdAt,
      phone: '',
      confirmed_at: user.createdAt,
      last_sign_in_at: user.lastSignInAt,
      app_metadata: { provider: 'email', providers: ['email'] },
      user_metadata: user.userMetadata,
      identities: [],
      created_at: user.createdAt,
      updated_at: user.lastSignInAt ?? user.createdAt,
      is_anonymous: false,
    };
  }

  async function session(user: StoredUser, sessionId: string, method: string) {
    const now = Math.floor(Date.now() / 1000);
    user.lastSignInAt = new Date().toISOString();
    const accessToken = await new SignJWT({
      email: user.email,
      phone: '',
      app_metadata: { provider: 'email', providers: ['email'] },
      user_metadata: user.userMetadata,
      role: 'authenticated',
      aal: 'aal1',
      amr: [{ method, timestamp: now }],
      session_id: sessionId,
      is_anonymous: false,
    })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer(`${baseUrl}/auth/v1`)
      .setSubject(user.id)
      .setAudience('authenticated')
      .setIssuedAt(now)
      .setExpirationTime(now + accessTokenSeconds)
      .sign(secret);
    const refreshToken = randomBytes(12).toString('base64url');
    refreshTokens.set(refreshToken, { userId: user.id, sessionId, revoked: false });
    return {
      access_token: accessToken,
      token_type: 'bearer',
      expires_in: accessTokenSeconds,
      expires_at: now + accessTokenSeconds,
      refresh_token: refreshToken,
      user: userJson(user),
    };
  }

  const userById = (id: string) => [...usersByEmail.values()].find((u) => u.id === id);

  async function verifyAccessToken(req: IncomingMessage): Promise<{ user: StoredUser; sessionId: string }> {
    const match = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    if (!match) throw new AuthError(401, 'no_authorization', 'This endpoint requires a Bearer token');
    try {
      const { payload } = await jwtVerify(match[1]!, secret, { algorithms: ['HS256'], audience: 'authenticated' });
      const user = userById(String(payload.sub));
      const sessionId = String(payload.session_id ?? '');
      if (!user) throw new AuthError(403, 'user_not_found', 'User from sub claim in JWT does not exist');
      if (revokedSessions.has(sessionId)) throw new AuthError(403, 'session_not_found', 'Session from session_id claim in JWT does not exist');
      return { user, sessionId };
    } catch (err) {
      if (err instanceof AuthError) throw err;
      throw new AuthError(403, 'bad_jwt', 'invalid JWT: unable to parse or verify signature, token is unverifiable');
    }
  }

  async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > 64 * 1024) throw new AuthError(413, 'request_too_large', 'Request body too large');
      chunks.push(chunk as Buffer);
    }
    if (chunks.length === 0) return {};
    try {
      const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      return parsed as Record<string, unknown>;
    } catch {
      throw new AuthError(400, 'bad_json', 'Could not parse request body as JSON');
    }
  }

  const credentials = (body: Record<string, unknown>) => ({
    email: typeof body.email === 'string' ? body.email.trim().toLowerCase() : '',
    password: typeof body.password === 'string' ? body.password : '',
  });

  async function handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const send = (status: number, body?: unknown) => {
      res.writeHead(status, body === undefined ? {} : { 'content-type': 'application/json' });
      res.end(body === undefined ? undefined : JSON.stringify(body));
    };
    const route = `${req.method} ${url.pathname}`;
    if (route === 'GET /auth/v1/settings') {
      return send(200, {
        external: { email: true, phone: false, anonymous_users: false, google: false, github: false, azure: false },
        disable_signup: false,
        mailer_autoconfirm: true,
        phone_autoconfirm: false,
        sms_provider: '',
        saml_enabled: false,
      });
    }
    if (route === 'POST /auth/v1/signup') {
      const body = await readJson(req);
      const { email, password } = credentials(body);
      if (!EMAIL.test(email)) throw new AuthError(400, 'validation_failed', 'Unable to validate email address: invalid format');
      if (password.length < MIN_PASSWORD_LENGTH) {
        throw new AuthError(422, 'weak_password', `Password should be at least ${MIN_PASSWORD_LENGTH} characters.`, { weak_password: { reasons: ['length'] } });
      }
      if (usersByEmail.has(email)) throw new AuthError(422, 'user_already_exists', 'User already registered');
      const data = body.data && typeof body.data === 'object' ? (body.data as Record<string, unknown>) : {};
      const user = await createUser(email, password, randomUUID(), data);
      // Autoconfirm (a project without email confirmation): the answer is a session.
      return send(200, await session(user, randomUUID(), 'password'));
    }
    if (route === 'POST /auth/v1/token') {
      const grantType = url.searchParams.get('grant_type');
      const body = await readJson(req);
      if (grantType === 'password') {
        const { email, password } = credentials(body);
        const user = usersByEmail.get(email);
        const hash = user ? await hashPassword(password, Buffer.from(user.salt, 'base64')) : undefined;
        if (!user || !hash || !timingSafeEqual(hash, Buffer.from(user.passwordHash, 'base64'))) {
          throw new AuthError(400, 'invalid_credentials', 'Invalid login credentials');
        }
        return send(200, await session(user, randomUUID(), 'password'));
      }
      if (grantType === 'refresh_token') {
        const presented = typeof body.refresh_token === 'string' ? body.refresh_token : '';
        const stored = refreshTokens.get(presented);
        if (!stored || stored.revoked || revokedSessions.has(stored.sessionId)) {
          throw new AuthError(400, 'refresh_token_not_found', 'Invalid Refresh Token: Refresh Token Not Found');
        }
        const user = userById(stored.userId);
        if (!user) throw new AuthError(400, 'refresh_token_not_found', 'Invalid Refresh Token: Refresh Token Not Found');
        stored.revoked = true;
        return send(200, await session(user, stored.sessionId, 'token_refresh'));
      }
      throw new AuthError(400, 'unsupported_grant_type', 'unsupported_grant_type');
    }
    if (route === 'GET /auth/v1/user') {
      const { user } = await verifyAccessToken(req);
      return send(200, userJson(user));
    }
    if (route === 'POST /auth/v1/logout') {
      const { user, sessionId } = await verifyAccessToken(req);
      const scope = url.searchParams.get('scope') ?? 'global';
      for (const token of refreshTokens.values()) {
        if (token.userId !== user.id) continue;
        const same = token.sessionId === sessionId;
        if (scope === 'global' || (scope === 'local' && same) || (scope === 'others' && !same)) {
          token.revoked = true;
          revokedSessions.add(token.sessionId);
        }
      }
      if (scope !== 'others') revokedSessions.add(sessionId);
      return send(204);
    }
    throw new AuthError(404, 'not_found', `The sandbox auth server does not implement ${route}`);
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://sandbox');
    requests.push({ method: req.method ?? '', path: url.pathname, grantType: url.searchParams.get('grant_type') });
    // The console calls Supabase Auth from the browser, on another origin.
    res.setHeader('access-control-allow-origin', '*');
    res.setHeader('access-control-allow-headers', 'authorization, apikey, content-type, x-client-info, x-supabase-api-version');
    res.setHeader('access-control-allow-methods', 'GET, POST, PUT, DELETE, OPTIONS');
    res.setHeader('x-supabase-api-version', '2024-01-01');
    if (req.method === 'OPTIONS') {
      res.writeHead(204);
      res.end();
      return;
    }
    const fail = (err: unknown) => {
      const error = err instanceof AuthError ? err : new AuthError(500, 'unexpected_failure', 'Unexpected failure');
      res.writeHead(error.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ code: error.code, error_code: error.code, message: error.message, msg: error.message, ...error.extra }));
    };
    if (req.headers.apikey !== anonKey) {
      fail(new AuthError(401, 'no_api_key', 'No API key found in request or the key is not this project\'s'));
      return;
    }
    handle(req, res, url).catch(fail);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  baseUrl = `http://${options.host ?? '127.0.0.1'}:${port}`;

  const addUser = async (user: SandboxAuthUser) => {
    const email = user.email.toLowerCase();
    const existing = usersByEmail.get(email);
    if (existing?.id === user.id) return;
    await createUser(email, user.password, user.id);
  };
  for (const user of options.users ?? []) await addUser(user);

  return {
    url: baseUrl,
    anonKey,
    requests,
    addUser,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
