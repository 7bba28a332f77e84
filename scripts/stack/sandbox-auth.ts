/**
 * A sandbox of Supabase Auth (GoTrue) on loopback, for `npm run dev` and the tests: Supabase Auth
 * cannot run on our machines, and the console signs in with the unmodified `@supabase/supabase-js`.
 *
 * It speaks the part of GoTrue's HTTP API that supabase-js uses for email and password, magic
 * links and OAuth providers:
 *   POST /auth/v1/signup                              (autoconfirmed: answers with a session)
 *   POST /auth/v1/token?grant_type=password           (email + password)
 *   POST /auth/v1/token?grant_type=refresh_token      (refresh tokens rotate; a used one is refused)
 *   POST /auth/v1/token?grant_type=pkce               (auth_code + code_verifier of a PKCE flow)
 *   POST /auth/v1/otp                                 (signInWithOtp: mails a magic link and a code)
 *   GET  /auth/v1/verify?token=&type=&redirect_to=    (the magic link: back to redirect_to with
 *                                                      ?code= (PKCE) or #access_token=... (implicit))
 *   POST /auth/v1/verify                              (verifyOtp: the emailed code or token hash)
 *   GET  /auth/v1/authorize?provider=&redirect_to=    (signInWithOAuth: on to the provider)
 *   GET  /auth/v1/callback?code=&state=               (the provider's answer: back to redirect_to)
 *   GET  /auth/v1/user                                (the user of a valid access token)
 *   POST /auth/v1/logout?scope=global|local|others    (revokes refresh tokens, 204)
 *   GET  /auth/v1/settings                            (which providers are enabled)
 * Access tokens are HS256 JWTs with Supabase's claims, signed with the project JWT secret the API
 * verifies. Every request must carry the anon key as `apikey`, as Supabase's gateway requires,
 * except the ones a browser navigates to (`/verify`, `/authorize`, `/callback`), which the
 * gateway leaves open too. Errors use the 2024-01-01 API version's shape (`{ code, message }`
 * plus the legacy `error_code` and `msg`), which supabase-js turns into an AuthApiError with
 * that code; errors of a browser redirect go back to redirect_to as GoTrue sends them.
 *
 * Two parts are the sandbox's own, not GoTrue's, and stand in for what a real project has
 * outside Auth: the mailbox (`GET /sandbox/mailbox?email=`, every email "sent", as JSON, or as a
 * page with clickable links for a browser), and the OAuth provider (`/sandbox/oauth/authorize`,
 * a consent page that asks which account to sign in as, for each provider in `oauthProviders`).
 *
 * Users live in memory, and in `stateFile` when given so sign-ups survive a dev restart.
 * Importing this module has no side effects.
 */
import { createHash, randomBytes, randomInt, randomUUID, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { jwtVerify, SignJWT } from 'jose';
import { consentPage, mailboxPage, PAGE_CSP, type SandboxEmail } from './sandbox-auth-pages.js';

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
  /**
   * GoTrue's SITE_URL: where links and OAuth go back to when `redirect_to` is missing or not
   * allowed. A `redirect_to` on the same host is allowed, as GoTrue allows the site's host.
   * Default: http://127.0.0.1:3000 (the dev console).
   */
  siteUrl?: string;
  /**
   * The OAuth providers the project enables (`/settings` reports them), each with the account
   * its consent page suggests signing in as. Default: none.
   */
  oauthProviders?: Record<string, { email: string }>;
}

export interface SandboxAuth {
  /** The SUPABASE_URL of the sandbox, e.g. http://127.0.0.1:PORT */
  url: string;
  /** The SUPABASE_ANON_KEY: an HS256 JWT with role `anon`, as Supabase issues. */
  anonKey: string;
  /** Every request received, for tests asserting what the client sent. */
  requests: Array<{ method: string; path: string; grantType: string | null }>;
  /** Every email sent (magic links), oldest first; also served at GET /sandbox/mailbox. */
  mailbox: SandboxEmail[];
  addUser(user: SandboxAuthUser): Promise<void>;
  close(): Promise<void>;
}

interface StoredUser {
  id: string;
  email: string;
  /** Empty for a user who only ever signed in by magic link or OAuth. */
  passwordHash: string;
  salt: string;
  userMetadata: Record<string, unknown>;
  createdAt: string;
  lastSignInAt: string | null;
  /** Providers signed in with (`email`, `github`, ...); absent in state files of older sandboxes. */
  providers?: string[];
}

/** A PKCE flow (GoTrue's flow_state): the client's challenge, until the user is known and the code exchanged. */
interface FlowState {
  codeChallenge: string;
  method: 's256' | 'plain';
  provider: string;
  authenticationMethod: 'magiclink' | 'oauth';
  userId: string | null;
  /** When the auth code was handed out (or the flow started): the code is good for five minutes. */
  issuedAt: number;
}

/** A magic link (and its 6-digit code) sent by /otp. */
interface EmailOtp {
  email: string;
  code: string;
  type: 'magiclink';
  expiresAt: number;
  flowStateId: string | null;
}

/** An OAuth sign-in between /authorize and /callback. */
interface OAuthState {
  provider: string;
  redirectTo: string;
  flowStateId: string | null;
}

interface RefreshToken {
  userId: string;
  sessionId: string;
  revoked: boolean;
}

const MIN_PASSWORD_LENGTH = 6;
/** GoTrue's defaults: email links live an hour (MAILER_OTP_EXP), a PKCE flow five minutes. */
const EMAIL_OTP_SECONDS = 3600;
const FLOW_STATE_SECONDS = 300;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
/** GoTrue's `error` parameter of a redirect, by HTTP status of the error it stands for. */
const OAUTH_ERRORS: Record<number, string> = { 400: 'invalid_request', 401: 'unauthorized_client', 403: 'access_denied', 500: 'server_error', 503: 'temporarily_unavailable' };

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
  const mailbox: SandboxEmail[] = [];
  const otps = new Map<string, EmailOtp>();
  const flowStates = new Map<string, FlowState>();
  const oauthStates = new Map<string, OAuthState>();
  /** Codes the stand-in provider hands to /callback, with the account the user chose. */
  const providerCodes = new Map<string, { provider: string; email: string }>();
  const siteUrl = options.siteUrl ?? 'http://127.0.0.1:3000';
  const oauthProviders = options.oauthProviders ?? {};
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

  /** `password` null: a user created by a magic link or an OAuth sign-in, who has none. */
  async function createUser(email: string, password: string | null, id: string = randomUUID(), userMetadata: Record<string, unknown> = {}, provider = 'email'): Promise<StoredUser> {
    const salt = randomBytes(16);
    const user: StoredUser = {
      id,
      email,
      passwordHash: password === null ? '' : (await hashPassword(password, salt)).toString('base64'),
      salt: salt.toString('base64'),
      userMetadata,
      createdAt: new Date().toISOString(),
      lastSignInAt: null,
      providers: [provider],
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

  const appMetadata = (user: StoredUser) => {
    const providers = user.providers ?? ['email'];
    return { provider: providers[0], providers };
  };

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
      app_metadata: appMetadata(user),
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
      app_metadata: appMetadata(user),
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

  /** GoTrue's rule: a redirect_to on the site's host is allowed; anything else goes back to the site. */
  function redirectTarget(requested: string | null): string {
    if (!requested) return siteUrl;
    try {
      return new URL(requested).hostname === new URL(siteUrl).hostname ? requested : siteUrl;
    } catch {
      return siteUrl;
    }
  }

  /** The PKCE challenge a client sent, or null for the implicit flow. */
  function readChallenge(challenge: unknown, method: unknown): Pick<FlowState, 'codeChallenge' | 'method'> | null {
    const codeChallenge = typeof challenge === 'string' ? challenge : '';
    const lowered = typeof method === 'string' ? method.toLowerCase() : '';
    if (!codeChallenge && !lowered) return null;
    if (!codeChallenge || (lowered !== 's256' && lowered !== 'plain')) {
      throw new AuthError(400, 'validation_failed', 'PKCE flow requires code_challenge_method and code_challenge');
    }
    return { codeChallenge, method: lowered };
  }

  /** A new flow state; its id is the auth code handed back to the client once the user is known. */
  function startFlow(challenge: Pick<FlowState, 'codeChallenge' | 'method'>, provider: string, authenticationMethod: FlowState['authenticationMethod']): string {
    const authCode = randomUUID();
    flowStates.set(authCode, { ...challenge, provider, authenticationMethod, userId: null, issuedAt: Date.now() });
    return authCode;
  }

  async function signedInWith(user: StoredUser, provider: string): Promise<void> {
    const providers = user.providers ?? ['email'];
    if (!providers.includes(provider)) {
      user.providers = [...providers, provider];
      await persist();
    }
  }

  /**
   * Where a finished browser sign-in goes, as GoTrue sends it: `?code=` added to redirect_to for a
   * PKCE flow (its fragment, the console's route, kept), else the session in the fragment.
   */
  async function signedInRedirect(user: StoredUser, redirectTo: string, flowStateId: string | null, type: string, method: string): Promise<string> {
    const target = new URL(redirectTo);
    const flow = flowStateId ? flowStates.get(flowStateId) : undefined;
    if (flow) {
      flow.userId = user.id;
      flow.issuedAt = Date.now();
      target.searchParams.set('code', flowStateId!);
      return target.toString();
    }
    const s = await session(user, randomUUID(), method);
    target.hash = new URLSearchParams({
      access_token: s.access_token,
      expires_at: String(s.expires_at),
      expires_in: String(s.expires_in),
      refresh_token: s.refresh_token,
      token_type: s.token_type,
      type,
    }).toString();
    return target.toString();
  }

  /** GoTrue's error redirect: the error in the fragment, and in the query too for a PKCE flow. */
  function errorRedirect(redirectTo: string, error: AuthError, pkce: boolean): string {
    const target = new URL(redirectTo);
    const params = new URLSearchParams({ error: OAUTH_ERRORS[error.status] ?? 'server_error', error_code: error.code, error_description: error.message });
    if (pkce) for (const [key, value] of params) target.searchParams.set(key, value);
    target.hash = params.toString();
    return target.toString();
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
        external: { email: true, phone: false, anonymous_users: false, google: false, github: false, azure: false, ...Object.fromEntries(Object.keys(oauthProviders).map((p) => [p, true])) },
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
        const hash = user?.passwordHash ? await hashPassword(password, Buffer.from(user.salt, 'base64')) : undefined;
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
      if (grantType === 'pkce') {
        const authCode = typeof body.auth_code === 'string' ? body.auth_code : '';
        const verifier = typeof body.code_verifier === 'string' ? body.code_verifier : '';
        if (!authCode || !verifier) throw new AuthError(400, 'validation_failed', 'invalid request: both auth code and code verifier should be non-empty');
        const flow = flowStates.get(authCode);
        const user = flow?.userId ? userById(flow.userId) : undefined;
        if (!flow || !user) throw new AuthError(404, 'flow_state_not_found', 'invalid flow state, no valid flow state found');
        if (Date.now() - flow.issuedAt > FLOW_STATE_SECONDS * 1000) {
          flowStates.delete(authCode);
          throw new AuthError(400, 'flow_state_expired', 'invalid flow state, flow state has expired');
        }
        const presented = flow.method === 's256' ? createHash('sha256').update(verifier).digest('base64url') : verifier;
        if (presented !== flow.codeChallenge) throw new AuthError(403, 'bad_code_verifier', 'code challenge does not match previously saved code verifier');
        flowStates.delete(authCode);
        return send(200, await session(user, randomUUID(), flow.authenticationMethod === 'oauth' ? 'oauth' : 'otp'));
      }
      throw new AuthError(400, 'unsupported_grant_type', 'unsupported_grant_type');
    }
    if (route === 'POST /auth/v1/otp') {
      const body = await readJson(req);
      if (typeof body.phone === 'string') throw new AuthError(400, 'phone_provider_disabled', 'Unsupported phone provider');
      const { email } = credentials(body);
      if (!EMAIL.test(email)) throw new AuthError(400, 'validation_failed', 'Unable to validate email address: invalid format');
      const challenge = readChallenge(body.code_challenge, body.code_challenge_method);
      if (!usersByEmail.has(email)) {
        if (body.create_user === false) throw new AuthError(422, 'otp_disabled', 'Signups not allowed for otp');
        const data = body.data && typeof body.data === 'object' ? (body.data as Record<string, unknown>) : {};
        await createUser(email, null, randomUUID(), data);
      }
      // One live link per address, as GoTrue keeps one token per user: a new email voids the last.
      for (const [hash, otp] of otps) if (otp.email === email) otps.delete(hash);
      const code = String(randomInt(0, 1_000_000)).padStart(6, '0');
      const tokenHash = createHash('sha224').update(email + code).digest('hex');
      otps.set(tokenHash, { email, code, type: 'magiclink', expiresAt: Date.now() + EMAIL_OTP_SECONDS * 1000, flowStateId: challenge ? startFlow(challenge, 'email', 'magiclink') : null });
      const link = new URL(`${baseUrl}/auth/v1/verify`);
      link.search = new URLSearchParams({ token: tokenHash, type: 'magiclink', redirect_to: redirectTarget(url.searchParams.get('redirect_to')) }).toString();
      mailbox.push({ to: email, subject: 'Your Magic Link', type: 'magiclink', link: link.toString(), code, sentAt: new Date().toISOString() });
      return send(200, {});
    }
    if (route === 'POST /auth/v1/verify') {
      const body = await readJson(req);
      const type = typeof body.type === 'string' ? body.type : '';
      const { email } = credentials(body);
      const token = typeof body.token === 'string' ? body.token : '';
      const tokenHash = typeof body.token_hash === 'string' ? body.token_hash : email && token ? createHash('sha224').update(email + token).digest('hex') : '';
      const otp = otps.get(tokenHash);
      const user = otp ? usersByEmail.get(otp.email) : undefined;
      if (!otp || !user || (type !== 'email' && type !== 'magiclink') || otp.expiresAt < Date.now()) {
        throw new AuthError(403, 'otp_expired', 'Token has expired or is invalid');
      }
      otps.delete(tokenHash);
      await signedInWith(user, 'email');
      return send(200, await session(user, randomUUID(), 'otp'));
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

  /** Routes a browser navigates to (the gateway lets them through without the anon key): each answers a redirect or a page. */
  async function handleBrowser(req: IncomingMessage, res: ServerResponse, url: URL, route: string): Promise<boolean> {
    const redirect = (location: string, status = 303) => {
      res.writeHead(status, { location });
      res.end();
      return true;
    };
    const html = (body: string) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': PAGE_CSP, 'cache-control': 'no-store' });
      res.end(body);
      return true;
    };
    const callbackUrl = `${baseUrl}/auth/v1/callback`;
    if (route === 'GET /auth/v1/verify') {
      const redirectTo = redirectTarget(url.searchParams.get('redirect_to'));
      const token = url.searchParams.get('token') ?? '';
      const otp = otps.get(token);
      const user = otp ? usersByEmail.get(otp.email) : undefined;
      if (!otp || !user || url.searchParams.get('type') !== otp.type || otp.expiresAt < Date.now()) {
        return redirect(errorRedirect(redirectTo, new AuthError(403, 'otp_expired', 'Email link is invalid or has expired'), Boolean(otp?.flowStateId)));
      }
      otps.delete(token);
      await signedInWith(user, 'email');
      return redirect(await signedInRedirect(user, redirectTo, otp.flowStateId, 'magiclink', 'otp'));
    }
    if (route === 'GET /auth/v1/authorize') {
      const provider = url.searchParams.get('provider') ?? '';
      if (!oauthProviders[provider]) throw new AuthError(400, 'provider_disabled', 'Unsupported provider: provider is not enabled');
      const challenge = readChallenge(url.searchParams.get('code_challenge'), url.searchParams.get('code_challenge_method'));
      const state = randomBytes(16).toString('base64url');
      oauthStates.set(state, { provider, redirectTo: redirectTarget(url.searchParams.get('redirect_to')), flowStateId: challenge ? startFlow(challenge, provider, 'oauth') : null });
      const to = new URL(`${baseUrl}/sandbox/oauth/authorize`);
      to.search = new URLSearchParams({ provider, state, redirect_uri: callbackUrl }).toString();
      return redirect(to.toString(), 302);
    }
    if (route === 'GET /auth/v1/callback') {
      const stateId = url.searchParams.get('state') ?? '';
      const state = oauthStates.get(stateId);
      if (!state) return redirect(errorRedirect(siteUrl, new AuthError(400, 'bad_oauth_state', 'OAuth state parameter is invalid'), false));
      oauthStates.delete(stateId);
      const pkce = state.flowStateId !== null;
      if (url.searchParams.get('error')) {
        const description = url.searchParams.get('error_description') ?? 'The provider refused the sign-in';
        return redirect(errorRedirect(state.redirectTo, new AuthError(403, 'access_denied', description), pkce));
      }
      const granted = providerCodes.get(url.searchParams.get('code') ?? '');
      providerCodes.delete(url.searchParams.get('code') ?? '');
      if (!granted || granted.provider !== state.provider) {
        return redirect(errorRedirect(state.redirectTo, new AuthError(400, 'bad_oauth_callback', 'OAuth callback with missing or invalid code'), pkce));
      }
      // An account with the provider's verified email is the same user, as GoTrue links identities.
      const user = usersByEmail.get(granted.email) ?? (await createUser(granted.email, null, randomUUID(), {}, state.provider));
      await signedInWith(user, state.provider);
      return redirect(await signedInRedirect(user, state.redirectTo, state.flowStateId, 'signup', 'oauth'));
    }
    // The stand-in provider (not GoTrue): it only ever answers to this server's callback.
    if (route === 'GET /sandbox/oauth/authorize' || route === 'GET /sandbox/oauth/consent') {
      const provider = url.searchParams.get('provider') ?? '';
      const state = url.searchParams.get('state') ?? '';
      if (!oauthProviders[provider] || url.searchParams.get('redirect_uri') !== callbackUrl) {
        throw new AuthError(400, 'validation_failed', 'The sandbox provider answers only to this server\'s callback, for an enabled provider');
      }
      if (route === 'GET /sandbox/oauth/authorize') return html(consentPage({ provider, state, redirectUri: callbackUrl, email: oauthProviders[provider]!.email }));
      const back = new URL(callbackUrl);
      if (url.searchParams.get('decision') !== 'allow') {
        back.search = new URLSearchParams({ error: 'access_denied', error_description: 'The user denied access', state }).toString();
        return redirect(back.toString(), 302);
      }
      const email = (url.searchParams.get('email') ?? '').trim().toLowerCase();
      if (!EMAIL.test(email)) throw new AuthError(400, 'validation_failed', 'Unable to validate email address: invalid format');
      const code = randomBytes(16).toString('base64url');
      providerCodes.set(code, { provider, email });
      back.search = new URLSearchParams({ code, state }).toString();
      return redirect(back.toString(), 302);
    }
    if (route === 'GET /sandbox/mailbox') {
      const filter = url.searchParams.get('email')?.trim().toLowerCase() || null;
      const emails = mailbox.filter((m) => !filter || m.to === filter);
      if ((req.headers.accept ?? '').includes('text/html')) return html(mailboxPage(emails, filter));
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify({ messages: emails }));
      return true;
    }
    return false;
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
    const route = `${req.method} ${url.pathname}`;
    handleBrowser(req, res, url, route)
      .then(async (answered) => {
        if (answered) return;
        if (req.headers.apikey !== anonKey) throw new AuthError(401, 'no_api_key', 'No API key found in request or the key is not this project\'s');
        await handle(req, res, url);
      })
      .catch(fail);
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
    mailbox,
    addUser,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
