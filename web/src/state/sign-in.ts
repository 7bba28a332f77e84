/**
 * What the sign-in screen offers, from the Supabase project's `/auth/v1/settings`, and how a
 * magic link or an OAuth sign-in comes back to the console without losing its route.
 */

/** OAuth providers the console can offer, in the order it shows them (Supabase's provider ids). */
const PROVIDERS = [
  ['google', 'Google'],
  ['azure', 'Microsoft'],
  ['github', 'GitHub'],
  ['gitlab', 'GitLab'],
  ['bitbucket', 'Bitbucket'],
  ['slack_oidc', 'Slack'],
  ['linkedin_oidc', 'LinkedIn'],
  ['apple', 'Apple'],
] as const;

export type OAuthProviderId = (typeof PROVIDERS)[number][0];

export interface SignInOptions {
  /** The Email provider is on: passwords and sign-in links by email. */
  email: boolean;
  oauth: Array<{ id: OAuthProviderId; label: string }>;
}

/** Reads GoTrue's settings answer (`external: { email: true, github: false, ... }`); anything unexpected offers nothing extra. */
export function signInOptions(settings: unknown): SignInOptions {
  const external = (settings as { external?: unknown } | null)?.external;
  const enabled = (id: string) => typeof external === 'object' && external !== null && (external as Record<string, unknown>)[id] === true;
  return { email: enabled('email'), oauth: PROVIDERS.filter(([id]) => enabled(id)).map(([id, label]) => ({ id, label })) };
}

/**
 * Where a sign-in link or provider sends the browser back: this page with its route (the
 * fragment, e.g. `#/invite/<token>`), without a query. GoTrue adds `?code=` to it for PKCE and
 * keeps the fragment, so an invite opened signed out is still on screen after the sign-in.
 */
export function returnUrl(href: string): string {
  const url = new URL(href);
  return `${url.origin}${url.pathname}${url.hash}`;
}

const ERROR_KEYS = ['error', 'error_code', 'error_description'];

/**
 * A sign-in that came back failed (an expired link, a cancelled provider): GoTrue puts
 * `error`, `error_code` and `error_description` in the fragment, and in the query too for PKCE.
 * The fragment then holds no route, so the console goes back to `fallbackHash` (the route the
 * sign-in started from) or home.
 */
export function callbackFailure(href: string, fallbackHash: string | null): { message: string; cleanUrl: string } | null {
  const url = new URL(href);
  const fragment = new URLSearchParams(url.hash.slice(1));
  const from = ERROR_KEYS.some((k) => url.searchParams.has(k)) ? url.searchParams : ERROR_KEYS.some((k) => fragment.has(k)) ? fragment : null;
  if (!from) return null;
  const message = from.get('error_description') || from.get('error') || 'The sign-in did not complete.';
  for (const key of ERROR_KEYS) url.searchParams.delete(key);
  const fragmentIsError = ERROR_KEYS.some((k) => fragment.has(k));
  const hash = fragmentIsError ? (fallbackHash?.startsWith('#/') ? fallbackHash : '#/') : url.hash || '#/';
  return { message, cleanUrl: `${url.origin}${url.pathname}${url.search}${hash}` };
}
