/**
 * The sandbox Supabase Auth server, driven by the real `@supabase/supabase-js` client as the
 * console drives it, and its tokens presented to the real API.
 */
import { createClient, type SupabaseClient, type SupabaseClientOptions } from '@supabase/supabase-js';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandboxAuth, type SandboxAuth } from '../../scripts/stack/sandbox-auth.js';
import { TEST_JWT_SECRET } from '../support/auth.js';
import { startFullTestApp, type FullTestApp } from '../support/full-app.js';

/**
 * Node 20 has no global WebSocket and supabase-js builds its Realtime client eagerly; the auth
 * flows never open a socket, so a constructor that refuses keeps the client honest.
 */
class NoWebSocket {
  constructor() {
    throw new Error('Realtime is not used by the auth flows');
  }
}
const clientOptions: SupabaseClientOptions<'public'> = {
  auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  realtime: { transport: NoWebSocket as unknown as NonNullable<NonNullable<SupabaseClientOptions<'public'>['realtime']>['transport']> },
};

describe('sandbox Supabase Auth with supabase-js', () => {
  let auth: SandboxAuth;
  let full: FullTestApp;
  const demo = { id: randomUUID(), email: `demo-${randomUUID().slice(0, 8)}@example.test`, password: 'demo-password-1' };

  const client = (flowType: 'implicit' | 'pkce' = 'implicit'): SupabaseClient =>
    // No storage between clients: each is a fresh browser (a PKCE client keeps its verifier in memory).
    createClient(auth.url, auth.anonKey, { ...clientOptions, auth: { ...clientOptions.auth, flowType } });

  /** Where the server sends a browser that opens `url` (one hop). */
  const redirectOf = async (url: string): Promise<{ status: number; location: URL }> => {
    const res = await fetch(url, { redirect: 'manual' });
    return { status: res.status, location: new URL(res.headers.get('location') ?? 'about:blank') };
  };
  const lastEmailTo = (email: string) => auth.mailbox.filter((m) => m.to === email).at(-1);
  const fragment = (url: URL) => Object.fromEntries(new URLSearchParams(url.hash.slice(1)));
  const apiOrgs = (token: string) => full.app.inject({ method: 'GET', url: '/v1/orgs', headers: { authorization: `Bearer ${token}` } });
  /** The console's address with its route in the fragment, as it asks links to come back to. */
  const consoleInvite = 'http://127.0.0.1:4173/#/invite/inv-token-1';

  /** Walks the stand-in provider's consent as a browser would, answering as `email` (or cancelling). */
  async function consent(authorizeUrl: string, answer: { email: string } | 'deny'): Promise<URL> {
    const toProvider = await redirectOf(authorizeUrl);
    expect(toProvider.status).toBe(302);
    const page = await (await fetch(toProvider.location)).text();
    expect(page).toContain('<form method="get" action="/sandbox/oauth/consent">');
    const form = new URL('/sandbox/oauth/consent', auth.url);
    for (const key of ['provider', 'state', 'redirect_uri']) form.searchParams.set(key, toProvider.location.searchParams.get(key)!);
    if (answer === 'deny') form.searchParams.set('decision', 'deny');
    else {
      form.searchParams.set('email', answer.email);
      form.searchParams.set('decision', 'allow');
    }
    const toCallback = await redirectOf(form.toString());
    expect(toCallback.location.pathname).toBe('/auth/v1/callback');
    const back = await redirectOf(toCallback.location.toString());
    expect(back.status).toBe(303);
    return back.location;
  }

  beforeAll(async () => {
    auth = await startSandboxAuth({ jwtSecret: TEST_JWT_SECRET, users: [demo], oauthProviders: { github: { email: demo.email } } });
    full = await startFullTestApp();
  });
  afterAll(async () => {
    await auth?.close();
    await full?.close();
  });

  it('signs up, gets a session whose token the API accepts, and founds an org with it', async () => {
    const supabase = client();
    const email = `new-${randomUUID().slice(0, 8)}@example.test`;
    const { data, error } = await supabase.auth.signUp({ email, password: 'correct-horse' });
    expect(error).toBeNull();
    expect(data.user?.email).toBe(email);
    const token = data.session!.access_token;

    const created = await full.app.inject({ method: 'POST', url: '/v1/orgs', headers: { authorization: `Bearer ${token}` }, payload: { name: 'Signed-up org' } });
    expect(created.statusCode).toBe(201);
    expect(created.json().role).toBe('owner');
    const listed = await full.app.inject({ method: 'GET', url: '/v1/orgs', headers: { authorization: `Bearer ${token}` } });
    expect(listed.json().items.map((o: { id: string }) => o.id)).toEqual([created.json().id]);
  });

  it('refuses a second sign-up with the same email and a too-short password, with GoTrue error codes', async () => {
    const supabase = client();
    const again = await supabase.auth.signUp({ email: demo.email, password: 'whatever-1' });
    expect(again.error?.code).toBe('user_already_exists');
    expect(again.error?.status).toBe(422);
    const weak = await supabase.auth.signUp({ email: `weak-${randomUUID().slice(0, 8)}@example.test`, password: '123' });
    expect(weak.error?.code).toBe('weak_password');
  });

  it('signs in with a password as the seeded user (its fixed id), reads the user, refreshes and signs out', async () => {
    const supabase = client();
    const wrong = await supabase.auth.signInWithPassword({ email: demo.email, password: 'nope-nope' });
    expect(wrong.error?.code).toBe('invalid_credentials');
    expect(wrong.error?.message).toBe('Invalid login credentials');

    const signedIn = await supabase.auth.signInWithPassword({ email: demo.email.toUpperCase(), password: demo.password });
    expect(signedIn.error).toBeNull();
    expect(signedIn.data.user?.id).toBe(demo.id);
    const first = signedIn.data.session!;

    const user = await supabase.auth.getUser();
    expect(user.error).toBeNull();
    expect(user.data.user?.email).toBe(demo.email);

    const refreshed = await supabase.auth.refreshSession();
    expect(refreshed.error).toBeNull();
    expect(refreshed.data.session!.refresh_token).not.toBe(first.refresh_token);
    expect(auth.requests.some((r) => r.path === '/auth/v1/token' && r.grantType === 'refresh_token')).toBe(true);
    const me = await full.app.inject({ method: 'GET', url: '/v1/orgs', headers: { authorization: `Bearer ${refreshed.data.session!.access_token}` } });
    expect(me.statusCode).toBe(200);

    // A used refresh token is refused (rotation).
    const reuse = await client().auth.refreshSession({ refresh_token: first.refresh_token });
    expect(reuse.error?.code).toBe('refresh_token_not_found');

    const out = await supabase.auth.signOut();
    expect(out.error).toBeNull();
    expect(auth.requests.some((r) => r.path === '/auth/v1/logout')).toBe(true);
    const afterLogout = await client().auth.refreshSession({ refresh_token: refreshed.data.session!.refresh_token });
    expect(afterLogout.error?.code).toBe('refresh_token_not_found');
    const staleUser = await client().auth.getUser(refreshed.data.session!.access_token);
    // GoTrue answers `session_not_found`, which supabase-js reports as a missing session.
    expect(staleUser.error?.name).toBe('AuthSessionMissingError');
    expect(staleUser.data.user).toBeNull();
  });

  it('signs a new user in by magic link (PKCE): the emailed link comes back with a code, the route in the fragment kept', async () => {
    const supabase = client('pkce');
    const email = `link-${randomUUID().slice(0, 8)}@example.test`;
    const sent = await supabase.auth.signInWithOtp({ email, options: { emailRedirectTo: consoleInvite } });
    expect(sent.error).toBeNull();
    const otpRequest = auth.requests.filter((r) => r.path === '/auth/v1/otp').at(-1);
    expect(otpRequest?.method).toBe('POST');
    const mail = lastEmailTo(email)!;
    expect(mail.subject).toBe('Your Magic Link');
    expect(new URL(mail.link).pathname).toBe('/auth/v1/verify');

    // The mailbox serves the same email to tests and to a person in a browser.
    const listed = (await (await fetch(`${auth.url}/sandbox/mailbox?email=${encodeURIComponent(email.toUpperCase())}`)).json()) as { messages: Array<{ link: string }> };
    expect(listed.messages.map((m) => m.link)).toEqual([mail.link]);
    const page = await fetch(`${auth.url}/sandbox/mailbox`, { headers: { accept: 'text/html' } });
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(await page.text()).toContain(`<a href="${mail.link.replaceAll('&', '&#38;')}">Sign in</a>`);

    const back = await redirectOf(mail.link);
    expect(back.status).toBe(303);
    expect(back.location.origin + back.location.pathname).toBe('http://127.0.0.1:4173/');
    expect(back.location.hash).toBe('#/invite/inv-token-1');
    const code = back.location.searchParams.get('code')!;
    expect(code).toBeTruthy();

    const exchanged = await supabase.auth.exchangeCodeForSession(code);
    expect(exchanged.error).toBeNull();
    expect(exchanged.data.user?.email).toBe(email);
    expect(auth.requests.some((r) => r.path === '/auth/v1/token' && r.grantType === 'pkce')).toBe(true);
    expect((await apiOrgs(exchanged.data.session!.access_token)).statusCode).toBe(200);

    // A link works once, and so does a code; a user made by a link has no password to sign in with.
    const again = await redirectOf(mail.link);
    expect(fragment(again.location)).toMatchObject({ error: 'access_denied', error_code: 'otp_expired', error_description: 'Email link is invalid or has expired' });
    const reused = await fetch(`${auth.url}/auth/v1/token?grant_type=pkce`, {
      method: 'POST',
      headers: { apikey: auth.anonKey, 'content-type': 'application/json' },
      body: JSON.stringify({ auth_code: code, code_verifier: 'any-verifier-at-all-0000000000000000000000000' }),
    });
    expect(reused.status).toBe(404);
    expect(await reused.json()).toMatchObject({ code: 'flow_state_not_found' });
    const noPassword = await client().auth.signInWithPassword({ email, password: 'anything-at-all' });
    expect(noPassword.error?.code).toBe('invalid_credentials');
  });

  it('signs an existing user in by magic link (implicit flow) with the session in the fragment, and by the emailed code', async () => {
    const supabase = client();
    expect((await supabase.auth.signInWithOtp({ email: demo.email, options: { emailRedirectTo: 'http://127.0.0.1:4173/' } })).error).toBeNull();
    const back = await redirectOf(lastEmailTo(demo.email)!.link);
    const tokens = fragment(back.location);
    expect(tokens).toMatchObject({ token_type: 'bearer', type: 'magiclink', expires_in: '3600' });
    const user = await supabase.auth.getUser(tokens.access_token);
    expect(user.data.user?.id).toBe(demo.id);
    expect((await apiOrgs(tokens.access_token!)).statusCode).toBe(200);

    expect((await supabase.auth.signInWithOtp({ email: demo.email })).error).toBeNull();
    const mail = lastEmailTo(demo.email)!;
    const wrong = await supabase.auth.verifyOtp({ email: demo.email, token: mail.code === '000000' ? '111111' : '000000', type: 'email' });
    expect(wrong.error?.code).toBe('otp_expired');
    const verified = await supabase.auth.verifyOtp({ email: demo.email, token: mail.code, type: 'email' });
    expect(verified.error).toBeNull();
    expect(verified.data.user?.id).toBe(demo.id);
  });

  it('refuses a magic link to an unknown address when sign-ups by link are off, and sends links only back to the site', async () => {
    const refused = await client().auth.signInWithOtp({ email: `nobody-${randomUUID().slice(0, 8)}@example.test`, options: { shouldCreateUser: false } });
    expect(refused.error?.code).toBe('otp_disabled');
    expect(refused.error?.status).toBe(422);

    // GoTrue's allow-list: another host falls back to the Site URL.
    expect((await client().auth.signInWithOtp({ email: demo.email, options: { emailRedirectTo: 'https://elsewhere.example/steal' } })).error).toBeNull();
    const back = await redirectOf(lastEmailTo(demo.email)!.link);
    expect(back.location.origin).toBe('http://127.0.0.1:3000');
  });

  it('reports the enabled OAuth providers in /settings, as Supabase serves them to a browser', async () => {
    const res = await fetch(`${auth.url}/auth/v1/settings`, { headers: { apikey: auth.anonKey } });
    const settings = (await res.json()) as { external: Record<string, boolean> };
    expect(settings.external).toMatchObject({ email: true, github: true, google: false });
  });

  it('signs in with GitHub (PKCE) through the stand-in provider: a new account, and the existing user with the same email', async () => {
    const supabase = client('pkce');
    const email = `octo-${randomUUID().slice(0, 8)}@example.test`;
    const started = await supabase.auth.signInWithOAuth({ provider: 'github', options: { redirectTo: consoleInvite, skipBrowserRedirect: true } });
    expect(started.error).toBeNull();
    const authorize = new URL(started.data.url!);
    expect(authorize.pathname).toBe('/auth/v1/authorize');
    expect(authorize.searchParams.get('code_challenge_method')).toBe('s256');

    const back = await consent(started.data.url!, { email });
    expect(back.hash).toBe('#/invite/inv-token-1');
    const exchanged = await supabase.auth.exchangeCodeForSession(back.searchParams.get('code')!);
    expect(exchanged.error).toBeNull();
    expect(exchanged.data.user?.email).toBe(email);
    expect(exchanged.data.user?.app_metadata).toMatchObject({ provider: 'github', providers: ['github'] });
    expect((await apiOrgs(exchanged.data.session!.access_token)).statusCode).toBe(200);

    const demoClient = client('pkce');
    const demoStart = await demoClient.auth.signInWithOAuth({ provider: 'github', options: { redirectTo: 'http://127.0.0.1:4173/', skipBrowserRedirect: true } });
    const demoBack = await consent(demoStart.data.url!, { email: demo.email });
    const demoSession = await demoClient.auth.exchangeCodeForSession(demoBack.searchParams.get('code')!);
    expect(demoSession.data.user?.id).toBe(demo.id);
    expect(demoSession.data.user?.app_metadata.providers).toEqual(['email', 'github']);
  });

  it('refuses a PKCE code with the wrong verifier, a disabled provider, and brings a cancelled consent back as an error', async () => {
    const supabase = client('pkce');
    const started = await supabase.auth.signInWithOAuth({ provider: 'github', options: { redirectTo: 'http://127.0.0.1:4173/', skipBrowserRedirect: true } });
    const back = await consent(started.data.url!, { email: demo.email });
    const wrong = await fetch(`${auth.url}/auth/v1/token?grant_type=pkce`, {
      method: 'POST',
      headers: { apikey: auth.anonKey, 'content-type': 'application/json' },
      body: JSON.stringify({ auth_code: back.searchParams.get('code'), code_verifier: 'not-the-verifier-that-made-the-challenge-000' }),
    });
    expect(wrong.status).toBe(403);
    expect(await wrong.json()).toMatchObject({ code: 'bad_code_verifier' });

    const google = await client('pkce').auth.signInWithOAuth({ provider: 'google', options: { skipBrowserRedirect: true } });
    const disabled = await fetch(google.data.url!);
    expect(disabled.status).toBe(400);
    expect(await disabled.json()).toMatchObject({ code: 'provider_disabled' });

    const cancelled = await client('pkce').auth.signInWithOAuth({ provider: 'github', options: { redirectTo: 'http://127.0.0.1:4173/', skipBrowserRedirect: true } });
    const denied = await consent(cancelled.data.url!, 'deny');
    expect(denied.searchParams.get('code')).toBeNull();
    expect(fragment(denied)).toMatchObject({ error: 'access_denied', error_code: 'access_denied', error_description: 'The user denied access' });
  });

  it('refuses requests without the anon key, as the Supabase gateway does', async () => {
    const res = await fetch(`${auth.url}/auth/v1/token?grant_type=password`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: demo.email, password: demo.password }),
    });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { code: string }).code).toBe('no_api_key');
  });

  it('issues tokens the API refuses when signed with another secret', async () => {
    const other = await startSandboxAuth({ jwtSecret: 'another-project-secret-0123456789abcdef', users: [demo] });
    try {
      const supabase = createClient(other.url, other.anonKey, clientOptions);
      const { data } = await supabase.auth.signInWithPassword({ email: demo.email, password: demo.password });
      const res = await full.app.inject({ method: 'GET', url: '/v1/orgs', headers: { authorization: `Bearer ${data.session!.access_token}` } });
      expect(res.statusCode).toBe(401);
    } finally {
      await other.close();
    }
  });
});
