/// <reference lib="dom" />
/**
 * Who is signed in, and what the console does with a failed call. The token is kept in
 * sessionStorage (the tab's life, never on disk past it); the role's permissions come from
 * the whoami route and decide which controls exist (a control the role cannot use is not shown).
 */
import { ApiError, createApi, type WhoamiWire } from './api.ts';
import { byId } from './dom.ts';

const KEY = 'bpls_token';
let token = sessionStorage.getItem(KEY) || '';
let who: WhoamiWire | null = null;

export const api = createApi(
  () => token,
  (path, init) => fetch(path, init),
);

/** Keeps a token for this tab (empty: forgets it). */
export function setToken(t: string): void {
  token = t;
  if (t) sessionStorage.setItem(KEY, t);
  else sessionStorage.removeItem(KEY);
}

export const hasToken = (): boolean => token !== '';

/** Remembers who the token is. */
export function setWho(w: WhoamiWire | null): void {
  who = w;
}

export const whoami = (): WhoamiWire | null => who;

/** Whether the signed-in role has this permission (read, write, seats, tokens, sync, audit). */
export const can = (permission: string): boolean => who?.permissions.includes(permission) ?? false;

/**
 * Whether the token may call a route that spans every tenant with this permission: a token
 * limited to one tenant may not (entitlement writes, sync, tokens, the audit log).
 */
export const canGlobal = (permission: string): boolean =>
  can(permission) && who?.tenant_id === null;

/** Shows (or, with no text, hides) the page-wide banner: server down, token refused. */
export function banner(text?: string): void {
  const b = byId('banner');
  b.textContent = text ?? '';
  b.hidden = !text;
}

/**
 * Shows a failed call once: a refused token or a server that does not answer in the banner
 * (they concern every section), anything else in the section's own error line `boxId`.
 */
export function report(boxId: string, err: unknown): void {
  if (err instanceof ApiError && err.status === 0) {
    banner(`The server is not answering (${location.origin}). Is it running? Then reload.`);
  } else if (err instanceof ApiError && err.status === 401) {
    banner(`The token was refused: ${err.message}. Sign in again with a valid API token.`);
  } else {
    byId(boxId).textContent = err instanceof Error ? err.message : String(err);
  }
}

/** Clears a section's error line. */
export function clear(boxId: string): void {
  byId(boxId).textContent = '';
}
