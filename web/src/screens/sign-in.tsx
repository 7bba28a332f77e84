import { useState } from 'preact/hooks';
import { auth, type ConsoleConfig } from '../auth';
import { ErrorBox, formValues, useAction } from '../ui';

/**
 * Email and password through Supabase Auth (sign in, or create an account). The same code signs
 * in against a real Supabase project and against the dev sandbox.
 */
export function SignIn({ config, inviteToken }: { config: ConsoleConfig; inviteToken: string | undefined }) {
  const [mode, setMode] = useState<'signin' | 'signup'>('signin');
  const [notice, setNotice] = useState<string | null>(null);
  const submit = useAction(async (values: Record<string, string>) => {
    const credentials = { email: values.email ?? '', password: values.password ?? '' };
    const { data, error } = mode === 'signin' ? await auth().signInWithPassword(credentials) : await auth().signUp(credentials);
    if (error) throw new Error(error.message);
    // A project that confirms email first answers sign-up without a session.
    if (mode === 'signup' && !data.session) setNotice('Check your email to confirm the account, then sign in.');
  });
  if (!config.supabaseUrl) {
    return (
      <main id="main" class="narrow">
        <h1>Sign-in is not configured</h1>
        <p>Set SUPABASE_URL and SUPABASE_ANON_KEY on the API (see docs/console.md).</p>
      </main>
    );
  }
  return (
    <main id="main" class="narrow">
      <h1>{mode === 'signin' ? 'Sign in' : 'Create an account'}</h1>
      {inviteToken && <p class="notice">Sign in (or create an account) with the email address the invite was sent to, and you will join the organization.</p>}
      <form onSubmit={(e) => void submit.run(formValues(e))} class="stack">
        <label>
          Email
          <input name="email" type="email" autoComplete="email" required />
        </label>
        <label>
          Password
          <input name="password" type="password" autoComplete={mode === 'signin' ? 'current-password' : 'new-password'} minLength={6} required />
        </label>
        <ErrorBox error={submit.error} />
        {notice && <p role="status">{notice}</p>}
        <button type="submit" disabled={submit.busy}>
          {mode === 'signin' ? 'Sign in' : 'Create account'}
        </button>
      </form>
      <p>
        {mode === 'signin' ? 'New here? ' : 'Have an account? '}
        <button type="button" class="link" onClick={() => setMode(mode === 'signin' ? 'signup' : 'signin')}>
          {mode === 'signin' ? 'Create an account' : 'Sign in instead'}
        </button>
      </p>
    </main>
  );
}
