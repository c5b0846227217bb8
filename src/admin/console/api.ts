/**
 * The admin console's one way to the server: every API call it makes, typed by the wire shape it
 * reads. No other console module writes a path or calls fetch (src/admin/console/api.test.ts checks
 * every call here against the app's routes, with its method).
 */

/** What the console reads of an entitlement (GET /v1/entitlements, GET /v1/entitlements/{id}). */
export interface EntitlementWire {
  entitlement_id: string;
  tenant_id: string;
  product_id: string;
  status: string;
  starts_at: string;
  ends_at: string;
  source: string;
  policy_json: { type: string; max_seats?: number | null; [key: string]: unknown };
}

/** GET /v1/entitlements/{id}/usage. */
export interface UsageWire {
  seats: { assigned: number; total: number | null; active_30d: number };
  leases: { active: number; peak_30d: number };
  activity: { grants_30d: number; denials_30d: number; unique_users_30d: number };
}

export interface LeaseWire {
  lease_id: string;
  subject_type: string;
  subject_id: string;
  expires_at: string;
}

export interface SeatWire {
  seat_id: string;
  subject_type: string;
  subject_id: string;
  assigned_at: string;
  assigned_by: string;
}

export interface AuditWire {
  seq: number;
  at: string;
  actor: string;
  action: string;
  target_id: string | null;
}

/** A page of a list route. */
export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** The fetch the console uses: the browser's, or (in tests) one that reaches the app in process. */
export type Fetch = (path: string, init: RequestInit) => Promise<Response>;

/** A path segment: ids are URL-safe; encoding keeps a stray character from changing the route. */
const seg = encodeURIComponent;

/**
 * The admin API as the console calls it. `token()` is read at each call (the admin may sign in
 * again). Each call throws an Error whose message is `code: message` from the error envelope, or
 * the HTTP status when the answer has none.
 */
export function createApi(token: () => string, fetchFn: Fetch) {
  async function call<T>(method: Method, path: string, body?: unknown): Promise<T> {
    const res = await fetchFn(path, {
      method,
      headers: { authorization: `Bearer ${token()}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    const json = text ? (JSON.parse(text) as { error?: { code: string; message: string } }) : null;
    if (!res.ok)
      throw new Error(
        json?.error
          ? `${json.error.code}: ${json.error.message}`
          : `${res.status} ${res.statusText}`,
      );
    return json as T;
  }

  return {
    entitlements: (tenant: string) =>
      call<Page<EntitlementWire>>(
        'GET',
        `/v1/entitlements?limit=200${tenant ? `&tenant_id=${encodeURIComponent(tenant)}` : ''}`,
      ),
    entitlement: (id: string) => call<EntitlementWire>('GET', `/v1/entitlements/${seg(id)}`),
    usage: (id: string) => call<UsageWire>('GET', `/v1/entitlements/${seg(id)}/usage`),
    leases: (entitlementId: string) =>
      call<Page<LeaseWire>>(
        'GET',
        `/v1/leases?limit=200&entitlement_id=${encodeURIComponent(entitlementId)}`,
      ),
    seats: (id: string) =>
      call<Page<SeatWire>>('GET', `/v1/entitlements/${seg(id)}/seats?limit=500`),
    lifecycle: (id: string, action: 'suspend' | 'resume') =>
      call<EntitlementWire>('POST', `/v1/entitlements/${seg(id)}/${action}`),
    renew: (id: string, periodMonths: number) =>
      call<EntitlementWire>('POST', `/v1/entitlements/${seg(id)}/renew`, {
        period_months: periodMonths,
      }),
    assignSeat: (id: string, principalId: string) =>
      call<SeatWire>('POST', `/v1/entitlements/${seg(id)}/seats`, { principal_id: principalId }),
    revokeSeat: (id: string, seatId: string) =>
      call<unknown>('DELETE', `/v1/entitlements/${seg(id)}/seats/${seg(seatId)}`),
    revokeLease: (leaseId: string) => call<LeaseWire>('POST', `/v1/leases/${seg(leaseId)}/revoke`),
    syncStatus: () => call<unknown>('GET', '/v1/sync/status'),
    /** The audit log pages by sequence from the start: `after` is the sequence to start after. */
    audit: (limit: number, after?: number) =>
      call<Page<AuditWire> & { head: { seq: number } }>(
        'GET',
        `/v1/audit?limit=${limit}${after === undefined ? '' : `&cursor=${after}`}`,
      ),
  };
}

export type Api = ReturnType<typeof createApi>;
