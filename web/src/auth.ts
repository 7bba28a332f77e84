import { createClient, type Session, type SupabaseClient } from '@supabase/supabase-js';
import { setTokenSource } from './api/client';

export interface ConsoleConfig {
  supabaseUrl: string | null;
  supabaseAnonKey: string | null;
  temporalUiUrl: string | null;
}

let supabase: SupabaseClient | null = null;

/** Reads /console-config.json (the API hands out the Supabase project) and prepares sign-in. */
export async function loadConfig(): Promise<ConsoleConfig> {
  const res = await fetch('/console-config.json');
  if (!res.ok) throw new Error(`The console configuration could not be loaded (${res.status}).`);
  const config = (await res.json()) as ConsoleConfig;
  if (config.supabaseUrl && config.supabaseAnonKey) {
    supabase = createClient(config.supabaseUrl, config.supabaseAnonKey, { auth: { persistSession: true, autoRefreshToken: true, detectSessionInUrl: true } });
    setTokenSource(async () => (await supabase!.auth.getSession()).data.session?.access_token ?? null);
  }
  return config;
}

export function auth(): SupabaseClient['auth'] {
  if (!supabase) throw new Error('Sign-in is not configured: set SUPABASE_URL and SUPABASE_ANON_KEY on the API.');
  return supabase.auth;
}

export async function currentSession(): Promise<Session | null> {
  return supabase ? (await supabase.auth.getSession()).data.session : null;
}

export function onSessionChange(listener: (session: Session | null) => void): () => void {
  if (!supabase) return () => {};
  const { data } = supabase.auth.onAuthStateChange((_event, session) => listener(session));
  return () => data.subscription.unsubscribe();
}
