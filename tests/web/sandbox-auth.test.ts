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

  const client = (): SupabaseClient =>
    // No storage between clients: each is a fresh browser.
    createClient(auth.url, auth.anonKey, clientOptions);

  beforeAll(async () => {
    auth = await startSandboxAuth({ jwtSecret: TEST_JWT_SECRET, users: [demo] });
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
