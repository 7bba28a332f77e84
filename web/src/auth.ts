import { createClient, type Session, type SupabaseClient } from '@supabase/supabase-js';
import { setTokenSource } from './api/client';
import { callbackFailure, returnUrl, signInOptions, type OAuthProviderId, type SignInOptions } from './state/sign-in';

export interface ConsoleConfig {
  supabaseUrl: string | null;
  supabaseAnonKey: string | null;
  temporalUiUrl: string | null;
}

let supabase: SupabaseClient | null = null;
let project: { url: string; anonKey: string } | null = null;
/** Why the last magic link or OAuth sign-in failed, read from the URL it came back to. */
let failedSignIn: string | null = null;
/** The route a magic link or OAuth sign-in started from, for when it comes back with an error instead. */
const RETURN_KEY = 'console.signInFrom';

/** Reads /console-config.json (the API hands out the Supabase project) and prepares sign-in. */
export async function loadConfig(): Promise<ConsoleConfig> {
  const res = await fetch('/console-config.json');
  if (!res.ok) throw new Error(`The console configuration could not be loaded (${res.status}).`);
  const config = (await res.json()) as ConsoleConfig;
  takeFailedCallback();
  if (config.supabaseUrl && config.supabaseAnonKey) {
    project = { url: config.supabaseUrl, anonKey: config.supabaseAnonKey };
    // PKCE: links and providers come back with `?code=`, which leaves the route in the fragment alone
    // (the implicit flow would put the tokens there); supabase-js exchanges it when it starts.
    supabase = createClient(config.supabaseUrl, config.supabaseAnonKey, { auth: { persistSession: true, autoRefreshToken: true, detectSessionInUrl: true, flowType: 'pkce' } });
    setTokenSource(async () => (await supabase!.auth.getSession()).data.session?.access_token ?? null);
    await takeUnusedCode(supabase);
  }
  return config;
}

/**
 * A `?code=` still in the URL once supabase-js has started was not exchanged: the exchange failed,
 * or the link was opened in another browser than the one that asked for it (which alone holds the
 * PKCE verifier). Say so, and drop the code.
 */
async function takeUnusedCode(client: SupabaseClient): Promise<void> {
  const { error } = await client.auth.initialize();
  const url = new URL(location.href);
  if (!url.searchParams.has('code')) return;
  if (error) failedSignIn = error.message;
  else if (!(await client.auth.getSession()).data.session) failedSignIn = 'This sign-in link was asked for in another browser. Open it there, or ask for a new link here.';
  url.searchParams.delete('code');
  history.replaceState(history.state, '', url.toString());
}

/** Takes a failed sign-in's error out of the URL (before supabase-js sees it) and puts the route back. */
function takeFailedCallback(): void {
  const from = localStorage.getItem(RETURN_KEY);
  localStorage.removeItem(RETURN_KEY);
  const failure = callbackFailure(location.href, from);
  if (!failure) return;
  failedSignIn = failure.message;
  history.replaceState(history.state, '', failure.cleanUrl);
  dispatchEvent(new HashChangeEvent('hashchange'));
}

export function takeFailedSignIn(): string | null {
  const message = failedSignIn;
  failedSignIn = null;
  return message;
}

export function auth(): SupabaseClient['auth'] {
  if (!supabase) throw new Error('Sign-in is not configured: set SUPABASE_URL and SUPABASE_ANON_KEY on the API.');
  return supabase.auth;
}

/** Which ways to sign in the project enables: supabase-js has no call for it, Supabase serves GoTrue's settings. */
export async function loadSignInOptions(): Promise<SignInOptions> {
  if (!project) return signInOptions(null);
  const res = await fetch(`${project.url}/auth/v1/settings`, { headers: { apikey: project.anonKey } });
  if (!res.ok) throw new Error(`The sign-in options could not be loaded (${res.status}).`);
  return signInOptions(await res.json());
}

/** Mails a sign-in link that comes back to this page and route. */
export async function sendSignInLink(email: string): Promise<void> {
  localStorage.setItem(RETURN_KEY, location.hash);
  const { error } = await auth().signInWithOtp({ email, options: { emailRedirectTo: returnUrl(location.href) } });
  if (error) throw new Error(error.message);
}

/** Leaves for the provider (a top-level navigation, which the console's CSP does not restrict). */
export async function signInWithProvider(provider: OAuthProviderId): Promise<void> {
  localStorage.setItem(RETURN_KEY, location.hash);
  const { error } = await auth().signInWithOAuth({ provider, options: { redirectTo: returnUrl(location.href) } });
  if (error) throw new Error(error.message);
}

export async function currentSession(): Promise<Session | null> {
  return supabase ? (await supabase.auth.getSession()).data.session : null;
}

export function onSessionChange(listener: (session: Session | null) => void): () => void {
  if (!supabase) return () => {};
  const { data } = supabase.auth.onAuthStateChange((_event, session) => listener(session));
  return () => data.subscription.unsubscribe();
}
