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
  /** Each quota by name (GET /v1/entitlements/{id}, when the policy has quotas). */
  quotas?: Record<string, QuotaWire>;
}

export interface QuotaWire {
  limit: number;
  used: number;
  remaining: number;
}

/** An installation: one unit of a quota (GET /v1/entitlements/{id}/installations). */
export interface InstallationWire {
  installation_id: string;
  quota: string;
  name: string;
  version: string | null;
  principal_id: string | null;
  created_at: string;
}

/** GET /v1/entitlements/{id}/usage. */
export interface UsageWire {
  seats: { assigned: number; total: number | null; active_30d: number };
  leases: { active: number; peak_30d: number; borrowed?: number };
  activity: {
    grants_30d: number;
    denials_30d: number;
    unique_users_30d: number;
    overdraft_grants_30d?: number;
    borrows_30d?: number;
  };
}

export interface LeaseWire {
  lease_id: string;
  subject_type: string;
  subject_id: string;
  expires_at: string;
  borrowed?: true;
  overdraft?: true;
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

/** GET /v1/whoami. */
export interface WhoamiWire {
  token_id: string;
  name: string | null;
  role: string;
  tenant_id: string | null;
  permissions: string[];
  server_time: string;
  clock_suspect: boolean;
}

/** GET /v1/tokens rows; the create answer adds `token`, the secret, shown once. */
export interface TokenWire {
  token_id: string;
  name: string;
  role: string;
  tenant_id: string | null;
  prefix: string;
  status: string;
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  token?: string;
}

/** GET /v1/sync/status, the fields the console shows. */
export interface SyncStatusWire {
  server_id: string;
  kid: string;
  vendor_keys: Array<{ kid: string; public_key: string }>;
  allow_manual_provisioning: boolean;
  last_import: {
    seq: number;
    iss: string;
    kid: string;
    iat: string;
    exp: string;
    records: number;
    imported_at: string;
  } | null;
  last_export: { seq: number; created_at: string; period_start: string; records: number } | null;
  bundle_entitlements: unknown;
  permanent_revocations: number;
}

/** POST /v1/sync/import: what a bundle did, or (dry run) would do. */
export interface SyncImportWire {
  status: string;
  seq?: number;
  dry_run?: boolean;
  added?: number;
  updated?: number;
  revoked?: number;
  unchanged?: number;
  diff?: Record<string, unknown>;
  [key: string]: unknown;
}

/** One day of GET /v1/entitlements/{id}/usage.csv. */
export interface UsageDay {
  /** YYYY-MM-DD (UTC). */
  date: string;
  grants: number;
  denials: number;
  /** Most leases in force at once that day. */
  peak: number;
}

/** The list route's filters, as its query names them; empty ones are left out. */
export interface EntitlementFilter {
  id_prefix?: string;
  tenant_id?: string;
  product_id?: string;
  status?: string;
}

/** A page of a list route. */
export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** The fetch the console uses: the browser's, or (in tests) one that reaches the app in process. */
export type Fetch = (path: string, init: RequestInit) => Promise<Response>;

/**
 * A refused or failed call: `status` 0 when the server did not answer at all; `code` the error
 * envelope's (`unauthorized`, `invalid_request`, …); `message` what the API said, once.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** A path segment: ids are URL-safe; encoding keeps a stray character from changing the route. */
const seg = encodeURIComponent;

/** `?a=1&b=2` from the values given (empty and undefined ones left out), or ''. */
function query(q: Record<string, string | number | undefined>): string {
  const parts = Object.entries(q)
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

/** The error envelope's `{code, message}` in an answer's text, or null (a proxy's page, say). */
function envelope(text: string): { code: string; message: string } | null {
  try {
    return (JSON.parse(text) as { error?: { code: string; message: string } }).error ?? null;
  } catch {
    return null;
  }
}

/**
 * Daily usage from the CSV. Columns are found by their header names, counted from the end (ids
 * before them may hold commas), so a column added later moves nothing.
 */
export function parseUsageCsv(text: string): UsageDay[] {
  const [header = '', ...lines] = text.split(/\r?\n/);
  const names = header.split(',');
  const fromEnd = (name: string) => names.length - names.indexOf(name);
  const [grants, denials, peak] = ['grants', 'denials', 'peak_concurrent'].map(fromEnd);
  return lines
    .filter((l) => l !== '')
    .map((l) => {
      const c = l.split(',');
      const n = (back: number) => Number(c[c.length - back]);
      return { date: c[0]!, grants: n(grants!), denials: n(denials!), peak: n(peak!) };
    });
}

/**
 * The admin API as the console calls it. `token()` is read at each call (the admin may sign in
 * again). Each call throws an ApiError: the error envelope's code and message, the HTTP status
 * when the answer has none, status 0 when the server is not answering.
 */
export function createApi(token: () => string, fetchFn: Fetch) {
  async function send(method: Method, path: string, body?: BodyInit, type?: string) {
    let res: Response;
    try {
      res = await fetchFn(path, {
        method,
        headers: {
          authorization: `Bearer ${token()}`,
          ...(type ? { 'content-type': type } : {}),
        },
        ...(body === undefined ? {} : { body }),
      });
    } catch {
      throw new ApiError(0, 'unreachable', 'the server is not answering');
    }
    if (!res.ok) {
      const env = envelope(await res.text());
      if (env) throw new ApiError(res.status, env.code, env.message);
      throw new ApiError(res.status, 'http', `${res.status} ${res.statusText}`);
    }
    return res;
  }
  async function call<T>(method: Method, path: string, body?: unknown): Promise<T> {
    const json = body === undefined ? undefined : JSON.stringify(body);
    const res = await send(method, path, json, json === undefined ? undefined : 'application/json');
    const text = await res.text();
    return (text ? JSON.parse(text) : null) as T;
  }

  return {
    whoami: () => call<WhoamiWire>('GET', '/v1/whoami'),
    /** GET /readyz: `ready`, or why not (`draining`, `storage_full`, `clock_suspect`, …). */
    health: async (): Promise<string> => {
      try {
        const res = await fetchFn('/readyz', { method: 'GET' });
        return ((await res.json()) as { status: string }).status;
      } catch {
        return 'not answering';
      }
    },
    entitlements: (filter: EntitlementFilter, cursor?: string, limit = 50) =>
      call<Page<EntitlementWire>>('GET', `/v1/entitlements${query({ ...filter, cursor, limit })}`),
    entitlement: (id: string) => call<EntitlementWire>('GET', `/v1/entitlements/${seg(id)}`),
    createEntitlement: (body: Record<string, unknown>) =>
      call<EntitlementWire & { warnings?: string[] }>('POST', '/v1/entitlements', body),
    updateEntitlement: (id: string, patch: Record<string, unknown>) =>
      call<EntitlementWire>('PATCH', `/v1/entitlements/${seg(id)}`, patch),
    usage: (id: string) => call<UsageWire>('GET', `/v1/entitlements/${seg(id)}/usage`),
    /** The last 30 days, one row per day that had any activity. */
    usageDays: async (id: string) =>
      parseUsageCsv(
        await (await send('GET', `/v1/entitlements/${seg(id)}/usage.csv?days=30`)).text(),
      ),
    leases: (entitlementId: string) =>
      call<Page<LeaseWire>>(
        'GET',
        `/v1/leases${query({ limit: 200, entitlement_id: entitlementId })}`,
      ),
    seats: (id: string) =>
      call<Page<SeatWire>>('GET', `/v1/entitlements/${seg(id)}/seats?limit=500`),
    lifecycle: (id: string, action: 'suspend' | 'resume' | 'revoke') =>
      call<EntitlementWire>('POST', `/v1/entitlements/${seg(id)}/${action}`),
    renew: (id: string, periodMonths: number) =>
      call<EntitlementWire>('POST', `/v1/entitlements/${seg(id)}/renew`, {
        period_months: periodMonths,
      }),
    assignSeat: (id: string, subjectType: string, subjectId: string) =>
      call<SeatWire>('POST', `/v1/entitlements/${seg(id)}/seats`, {
        subject_type: subjectType,
        subject_id: subjectId,
      }),
    assignSeats: (id: string, subjectType: string, subjectIds: string[]) =>
      call<unknown>('POST', `/v1/entitlements/${seg(id)}/seats/bulk`, {
        subjects: subjectIds.map((s) => ({ subject_type: subjectType, subject_id: s })),
      }),
    revokeSeat: (id: string, seatId: string) =>
      call<unknown>('DELETE', `/v1/entitlements/${seg(id)}/seats/${seg(seatId)}`),
    installations: (id: string) =>
      call<Page<InstallationWire>>('GET', `/v1/entitlements/${seg(id)}/installations?limit=500`),
    removeInstallation: (id: string, installationId: string) =>
      call<InstallationWire>(
        'DELETE',
        `/v1/entitlements/${seg(id)}/installations/${seg(installationId)}`,
      ),
    revokeLease: (leaseId: string) => call<LeaseWire>('POST', `/v1/leases/${seg(leaseId)}/revoke`),
    syncStatus: () => call<SyncStatusWire>('GET', '/v1/sync/status'),
    /** Uploads a bundle file's bytes; a dry run answers the diff and changes nothing. */
    syncImport: async (bytes: ArrayBuffer, dryRun: boolean) =>
      (await (
        await send(
          'POST',
          `/v1/sync/import${dryRun ? '?dry_run=true' : ''}`,
          bytes,
          'application/octet-stream',
        )
      ).json()) as SyncImportWire,
    /** The next signed export: its bytes and the file name the server gives it. */
    syncExport: async () => {
      const res = await send('POST', '/v1/sync/export');
      const name = /filename="([^"]+)"/.exec(res.headers.get('content-disposition') ?? '')?.[1];
      return { blob: await res.blob(), name: name ?? 'export.bpsync' };
    },
    tokens: () => call<Page<TokenWire>>('GET', '/v1/tokens'),
    createToken: (body: { name: string; role: string; tenant_id?: string }) =>
      call<TokenWire>('POST', '/v1/tokens', body),
    revokeToken: (id: string) => call<TokenWire>('DELETE', `/v1/tokens/${seg(id)}`),
    /** The audit log pages by sequence from the start: `after` is the sequence to start after. */
    audit: (limit: number, after?: number) =>
      call<Page<AuditWire> & { head: { seq: number } }>(
        'GET',
        `/v1/audit${query({ limit, cursor: after })}`,
      ),
  };
}

export type Api = ReturnType<typeof createApi>;
