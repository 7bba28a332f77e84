import { randomBytes } from 'node:crypto';

/**
 * Binds an OAuth flow to the browser of the admin who started it (issue 12, item 5). Starting a
 * flow sets a short-lived, HttpOnly, SameSite=Lax cookie whose hash is stored with the `state`;
 * the callback completes only when the browser presents it. A victim lured to an attacker's
 * authorize link arrives without the attacker's cookie, so their CRM is never linked into the
 * attacker's org. Lax is what lets the cookie ride the CRM's top-level redirect back to us.
 */
export const OAUTH_BINDING_COOKIE = 'gap_oauth_binding';
const BINDING = /^[A-Za-z0-9_-]{43}$/;

/** The binding cookie's value from a Cookie header, when well formed. */
export function bindingFromCookies(header: string | undefined): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [name, ...rest] = part.trim().split('=');
    if (name === OAUTH_BINDING_COOKIE) {
      const value = rest.join('=');
      return BINDING.test(value) ? value : undefined;
    }
  }
  return undefined;
}

export function newBinding(): string {
  return randomBytes(32).toString('base64url');
}

/** Set-Cookie for the binding: the browser keeps reusing it for flows it starts until it expires. */
export function bindingCookie(value: string, opts: { maxAgeSeconds: number; secure: boolean }): string {
  return `${OAUTH_BINDING_COOKIE}=${value}; Path=/v1; Max-Age=${opts.maxAgeSeconds}; HttpOnly; SameSite=Lax${opts.secure ? '; Secure' : ''}`;
}
