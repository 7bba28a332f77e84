import { useState } from 'preact/hooks';
import { auth, loadSignInOptions, sendSignInLink, signInWithProvider, takeFailedSignIn, type ConsoleConfig } from '../auth';
import { ErrorBox, formValues, useAction, useLoad } from '../ui';

type Mode = 'signin' | 'signup' | 'link';

const TITLES: Record<Mode, string> = { signin: 'Sign in', signup: 'Create an account', link: 'Sign in by email link' };

/**
 * Sign-in through Supabase Auth: email and password (sign in, or create an account), and where
 * the project enables them an emailed sign-in link and OAuth providers. The same code signs in
 * against a real Supabase project and against the dev sandbox.
 */
export function SignIn({ config, inviteToken }: { config: ConsoleConfig; inviteToken: string | undefined }) {
  const [mode, setMode] = useState<Mode>('signin');
  const [notice, setNotice] = useState<string | null>(null);
  const [linkSentTo, setLinkSentTo] = useState<string | null>(null);
  // A link or provider that came back failed (expired, cancelled) says why here.
  const [failed] = useState(() => takeFailedSignIn());
  // Without the settings (a network hiccup) the screen still offers the password.
  const options = useLoad(loadSignInOptions, []);
  const emailEnabled = options.data?.email ?? true;
  const providers = options.data?.oauth ?? [];

  const submit = useAction(async (values: Record<string, string>) => {
    const email = values.email ?? '';
    if (mode === 'link') {
      await sendSignInLink(email);
      setLinkSentTo(email);
      return;
    }
    const credentials = { email, password: values.password ?? '' };
    const { data, error } = mode === 'signin' ? await auth().signInWithPassword(credentials) : await auth().signUp(credentials);
    if (error) throw new Error(error.message);
    // A project that confirms email first answers sign-up without a session.
    if (mode === 'signup' && !data.session) setNotice('Check your email to confirm the account, then sign in.');
  });
  const continueWith = useAction(signInWithProvider);
  const switchTo = (next: Mode) => {
    setMode(next);
    setNotice(null);
    setLinkSentTo(null);
  };

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
      <h1>{TITLES[mode]}</h1>
      {inviteToken && <p class="notice">Sign in (or create an account) with the email address the invite was sent to, and you will join the organization.</p>}
      {failed && <ErrorBox error={new Error(failed)} />}
      {emailEnabled && linkSentTo && (
        <p role="status" class="notice">
          We sent a sign-in link to <strong>{linkSentTo}</strong>. Open it in this browser to sign in; it works once, within an hour.
        </p>
      )}
      {emailEnabled && !linkSentTo && (
        <form onSubmit={(e) => void submit.run(formValues(e))} class="stack">
          <label>
            Email
            <input name="email" type="email" autoComplete="email" required />
          </label>
          {mode !== 'link' && (
            <label>
              Password
              <input name="password" type="password" autoComplete={mode === 'signin' ? 'current-password' : 'new-password'} minLength={6} required />
            </label>
          )}
          <ErrorBox error={submit.error} />
          {notice && <p role="status">{notice}</p>}
          <button type="submit" disabled={submit.busy}>
            {mode === 'signin' ? 'Sign in' : mode === 'signup' ? 'Create account' : 'Email me a sign-in link'}
          </button>
        </form>
      )}
      {providers.length > 0 && (
        <div class="stack providers">
          {emailEnabled && <p class="muted or">or</p>}
          {providers.map((p) => (
            <button key={p.id} type="button" class="secondary" disabled={continueWith.busy} onClick={() => void continueWith.run(p.id)}>
              Continue with {p.label}
            </button>
          ))}
          <ErrorBox error={continueWith.error} />
        </div>
      )}
      {emailEnabled && (
        <p class="stack">
          <span>
            {mode === 'signup' ? 'Have an account? ' : 'New here? '}
            <button type="button" class="link" onClick={() => switchTo(mode === 'signup' ? 'signin' : 'signup')}>
              {mode === 'signup' ? 'Sign in instead' : 'Create an account'}
            </button>
          </span>
          <span>
            {mode === 'link' ? 'Have a password? ' : 'No password? '}
            <button type="button" class="link" onClick={() => switchTo(mode === 'link' ? 'signin' : 'link')}>
              {mode === 'link' ? 'Use your password' : 'Email me a link instead'}
            </button>
          </span>
        </p>
      )}
    </main>
  );
}
