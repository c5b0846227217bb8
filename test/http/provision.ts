import { expect } from 'vitest';

/** A fetch-like call: `fetch` on a listening server's URL, or the app's `request`. */
export type Call = (path: string, init: RequestInit) => Response | Promise<Response>;

/**
 * Creates the test's entitlement through POST /v1/entitlements with an admin token and expects
 * 201: the setup the HTTP edge tests share, whichever way they reach the server.
 */
export async function provisionEntitlement(
  call: Call,
  token: string,
  body: unknown,
): Promise<void> {
  const made = await call('/v1/entitlements', {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(made.status).toBe(201);
}
