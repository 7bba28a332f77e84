import type { Route } from './route.js';

/**
 * The org a user last worked in, remembered per user id in this browser, so a returning user's
 * first screen opens it without waiting for `GET /v1/orgs` (the list is checked as it arrives).
 * Per user: someone else signing in on the same browser must not be sent to the previous user's org.
 */
export interface OrgStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

const key = (userId: string) => `console.org:${userId}`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function rememberedOrg(store: OrgStore, userId: string): string | null {
  const value = store.getItem(key(userId));
  // Anything else (an older console's value, a hand edit) would route to a not-found screen.
  return value && UUID.test(value) ? value : null;
}

export function rememberOrg(store: OrgStore, userId: string, orgId: string): void {
  store.setItem(key(userId), orgId);
}

/** Forgets `orgId` only if it is still the one remembered (another tab may have moved on). */
export function forgetOrg(store: OrgStore, userId: string, orgId: string): void {
  if (store.getItem(key(userId)) === orgId) store.removeItem(key(userId));
}

/**
 * Where `/` leads. Before the org list answers: the remembered org, at once (null: wait for the
 * list). After: the remembered org if the user is still a member, else the first, else founding one.
 */
export function homeRoute(remembered: string | null, orgs: ReadonlyArray<{ id: string }> | undefined): Route | null {
  if (!orgs) return remembered ? { name: 'agents', orgId: remembered } : null;
  const target = orgs.find((o) => o.id === remembered) ?? orgs[0];
  return target ? { name: 'agents', orgId: target.id } : { name: 'new-org' };
}

/**
 * The route's org against the user's org list: `checking` until the list answers; `gone` when an
 * org opened from memory is no longer one of theirs (the console moves on without an error);
 * `not-member` when the user asked for it (a link, a typed URL), which deserves the error.
 */
export type Membership = 'member' | 'checking' | 'gone' | 'not-member';

export function membership(orgId: string, orgs: ReadonlyArray<{ id: string }> | undefined, openedFromMemory: string | null): Membership {
  if (!orgs) return 'checking';
  if (orgs.some((o) => o.id === orgId)) return 'member';
  return orgId === openedFromMemory ? 'gone' : 'not-member';
}
