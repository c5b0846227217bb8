import { EventEmitter } from 'node:events';
import { TokenError } from '../../../src/tokens/errors.ts';
import type { LeaseClaims } from '../../../src/tokens/lease-token.ts';
import { LicenseError } from './errors.ts';
import { verifyLeaseToken, type PublishedKey } from './verify.ts';

/** Who holds a lease: a user (per_user seats) or a machine (per_machine seats). */
export interface Subject {
  type: 'user' | 'machine';
  id: string;
}

/** `Subject.user('user_123')`, `Subject.machine(os.hostname())`. */
export const Subject = {
  user: (id: string): Subject => ({ type: 'user', id }),
  machine: (id: string): Subject => ({ type: 'machine', id }),
};

export interface LicenseClientOptions {
  /**
   * The license server, or several (the same license service behind several addresses): each call
   * tries them in order, starting with the one that answered last, and moves on when one is
   * unreachable, times out or answers 5xx.
   */
  urls: string | readonly string[];
  /** Time limit of one HTTP call to one server, in ms (default 10,000). */
  timeoutMs?: number;
  /**
   * Release every lease still held when the process ends: SIGINT, SIGTERM (then the signal's
   * default action, unless the application has its own listener), or the event loop running
   * empty. Default true. An explicit `process.exit()` cannot wait for the network: such a lease
   * frees its seat when it expires.
   */
  releaseOnExit?: boolean;
  /**
   * Renew when this fraction of the lease's remaining time has passed (default 0.5), jittered by
   * ±10 % so a fleet started together does not renew together.
   */
  renewAt?: number;
  /** Clock difference tolerated between this machine and the server for `nbf`/`exp`, in seconds (default 60). */
  leewaySeconds?: number;
  /** A fetch implementation (default: the global one). */
  fetch?: typeof fetch;
}

export interface LeaseRequest {
  /** The product id the vendor gave the application (the token's `aud`). */
  product: string;
  /** The customer's tenant id on that server. */
  tenant: string;
  subject: Subject;
  /** Features the application needs; the server refuses any the entitlement lacks. */
  features?: readonly string[];
  /** Pin one entitlement instead of letting the server pick. */
  entitlementId?: string;
  /**
   * Borrow the seat for offline use: the lease and its token last this many hours (up to the
   * policy's max_borrow_hours); `lease.borrowed` is then true. release() returns it early.
   */
  borrowHours?: number;
  /**
   * This process's instance id when one subject runs several (workstations, processes): they
   * share one lease and seat; releasing one keeps the others.
   */
  instanceId?: string;
  /**
   * When every seat is in use, wait up to this many seconds (1-300) in the server's queue, first
   * come first served, instead of failing at once with `seats_exhausted`.
   */
  waitSeconds?: number;
  /** Cancels the request (not the lease once granted: call release()). */
  signal?: AbortSignal;
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
  url: string;
}

interface IssuedLease {
  lease_id: string;
  token: string;
  expires_at: string;
  features: string[];
}

const held = new Set<Lease>();
let exitHooks = false;

/** Releases every lease held in this process; waits at most `withinMs`. */
async function releaseAll(withinMs: number): Promise<void> {
  const all = [...held].map((l) => l.release().catch(() => {}));
  await Promise.race([Promise.all(all), new Promise((r) => setTimeout(r, withinMs).unref())]);
}

function installExitHooks(): void {
  if (exitHooks) return;
  exitHooks = true;
  // The loop ran empty: release (that work keeps the process alive until it is done).
  process.on('beforeExit', () => {
    if (held.size > 0) void releaseAll(5000);
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    const onSignal = () => {
      void releaseAll(3000).finally(() => {
        // Nobody else listens: do what the signal would have done without us.
        if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
        else process.once(sig, onSignal);
      });
    };
    process.once(sig, onSignal);
  }
}

/**
 * A client of one license service. Make one per application and share it.
 *
 * @example
 * const client = new LicenseClient({ urls: ['http://license.corp:8080'] });
 * const lease = await client.requestLease({ product: 'cad-pro', tenant: 'acme', subject: Subject.user('alice') });
 * lease.on('lost', () => disablePremiumFeatures());
 */
export class LicenseClient {
  readonly urls: readonly string[];
  readonly #timeoutMs: number;
  readonly #releaseOnExit: boolean;
  readonly #renewAt: number;
  readonly #leewaySeconds: number;
  readonly #fetch: typeof fetch;
  #preferred = 0;
  readonly #keys = new Map<string, readonly PublishedKey[]>();

  constructor(opts: LicenseClientOptions) {
    const urls = (typeof opts.urls === 'string' ? [opts.urls] : [...opts.urls]).map((u) =>
      u.replace(/\/+$/, ''),
    );
    if (urls.length === 0) throw new TypeError('LicenseClient: give at least one server URL');
    for (const u of urls) {
      const parsed = URL.canParse(u) ? new URL(u) : undefined;
      if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:'))
        throw new TypeError(`LicenseClient: ${u} is not an http(s) URL`);
    }
    const renewAt = opts.renewAt ?? 0.5;
    if (!(renewAt > 0 && renewAt < 1))
      throw new TypeError('LicenseClient: renewAt must be between 0 and 1');
    this.urls = urls;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#releaseOnExit = opts.releaseOnExit ?? true;
    this.#renewAt = renewAt;
    this.#leewaySeconds = opts.leewaySeconds ?? 60;
    this.#fetch = opts.fetch ?? globalThis.fetch;
  }

  /**
   * Asks for a lease, verifies its token offline with the server's published keys and starts
   * renewing it in the background.
   *
   * @throws LicenseError — the server's code (`seats_exhausted`, `seat_not_assigned`,
   *   `feature_not_entitled`, `entitlement_inactive`, `not_found`, `invalid_request`,
   *   `clock_suspect`, `busy`, …) or `unreachable`, `timeout`, `aborted`, `bad_response`,
   *   `token_rejected`
   */
  async requestLease(req: LeaseRequest): Promise<Lease> {
    const body: Record<string, unknown> = {
      product_id: req.product,
      tenant_id: req.tenant,
      subject_type: req.subject.type,
      subject_id: req.subject.id,
    };
    if (req.features !== undefined) body.features = [...req.features];
    if (req.entitlementId !== undefined) body.entitlement_id = req.entitlementId;
    if (req.borrowHours !== undefined) body.borrow_hours = req.borrowHours;
    if (req.instanceId !== undefined) body.instance_id = req.instanceId;
    if (req.waitSeconds !== undefined) body.wait_seconds = req.waitSeconds;
    // A queued request may be answered only at its deadline: the time-out waits that long too.
    const waitMs = (req.waitSeconds ?? 0) * 1000;
    const a = await this.call('POST', '/v1/license/lease', body, req.signal, waitMs);
    const issued = readIssued(a);
    const claims = await this.verify(issued, a.url, req.product, req.tenant);
    const lease = new Lease(this, req, issued, claims);
    held.add(lease);
    if (this.#releaseOnExit) installExitHooks();
    lease.schedule();
    return lease;
  }

  /** The server's published signing keys (`GET /v1/license/keys`). */
  async keys(signal?: AbortSignal): Promise<PublishedKey[]> {
    const a = await this.call('GET', '/v1/license/keys', undefined, signal);
    return readKeys(a);
  }

  /** Releases every lease this client holds (best effort; each frees its seat at expiry anyway). */
  async close(): Promise<void> {
    await Promise.all(
      [...held].filter((l) => l.client === this).map((l) => l.release().catch(() => {})),
    );
  }

  /** @internal Verifies a token with the answering server's keys; fetches them again once for a new kid. */
  async verify(
    issued: IssuedLease,
    url: string,
    product: string,
    tenant: string,
  ): Promise<LeaseClaims> {
    const check = (keys: readonly PublishedKey[]) =>
      verifyLeaseToken(issued.token, keys, {
        productId: product,
        tenantId: tenant,
        leewaySeconds: this.#leewaySeconds,
      });
    let claims: LeaseClaims;
    try {
      let keys = this.#keys.get(url);
      if (!keys) {
        keys = await this.#fetchKeys(url);
      }
      try {
        claims = check(keys);
      } catch (err) {
        if (!(err instanceof TokenError && err.code === 'unknown_key')) throw err;
        claims = check(await this.#fetchKeys(url));
      }
    } catch (err) {
      if (err instanceof TokenError) {
        throw new LicenseError(
          'token_rejected',
          `the lease token from ${url} failed offline verification: ${err.message}`,
          { url, details: { token_error: err.code }, cause: err },
        );
      }
      throw err;
    }
    if (claims.jti !== issued.lease_id) {
      throw new LicenseError(
        'token_rejected',
        `the lease token from ${url} is for lease ${claims.jti}, not ${issued.lease_id}`,
        { url, details: { token_error: 'bad_claims' } },
      );
    }
    return claims;
  }

  async #fetchKeys(url: string): Promise<readonly PublishedKey[]> {
    const a = await this.#once(url, 'GET', '/v1/license/keys', undefined, undefined);
    if (a instanceof LicenseError) throw a;
    if (a.status !== 200) throw envelopeError(a);
    const keys = readKeys(a);
    this.#keys.set(url, keys);
    return keys;
  }

  /** @internal Renewal timing, read by Lease. */
  get renewAt(): number {
    return this.#renewAt;
  }

  /**
   * @internal One call with failover: each URL once, starting with the one that answered last.
   * A 4xx is the server's word and final; unreachable, time-out and 5xx move on to the next URL.
   */
  async call(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    signal: AbortSignal | undefined,
    extraMs = 0,
  ): Promise<Answer> {
    const attempts: Array<{ url: string; error: string }> = [];
    let lastServerError: LicenseError | undefined;
    for (let i = 0; i < this.urls.length; i++) {
      const index = (this.#preferred + i) % this.urls.length;
      const url = this.urls[index]!;
      const a = await this.#once(url, method, path, body, signal, extraMs);
      if (a instanceof LicenseError) {
        if (a.code === 'aborted') throw a;
        attempts.push({ url, error: a.message });
        if (a.status !== undefined) lastServerError = a;
        continue;
      }
      if (a.status >= 500) {
        const err = envelopeError(a);
        attempts.push({ url, error: `${a.status} ${err.code}` });
        lastServerError = err;
        continue;
      }
      this.#preferred = index;
      if (a.status >= 400) throw envelopeError(a);
      return a;
    }
    if (lastServerError) throw lastServerError;
    const timedOut = attempts.length > 0 && attempts.every((t) => t.error.startsWith('timeout'));
    throw new LicenseError(
      timedOut ? 'timeout' : 'unreachable',
      `no license server answered ${method} ${path}: ${attempts.map((t) => `${t.url}: ${t.error}`).join('; ')}`,
      { details: { attempts } },
    );
  }

  async #once(
    url: string,
    method: string,
    path: string,
    body: unknown,
    signal: AbortSignal | undefined,
    extraMs = 0,
  ): Promise<Answer | LicenseError> {
    const timeout = AbortSignal.timeout(this.#timeoutMs + extraMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    let res: Response;
    let text: string;
    try {
      res = await this.#fetch(`${url}${path}`, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: combined,
      });
      text = await res.text();
    } catch (err) {
      if (signal?.aborted)
        return new LicenseError('aborted', `${method} ${path} was aborted`, { url, cause: err });
      if (timeout.aborted)
        return new LicenseError('timeout', `timeout after ${this.#timeoutMs + extraMs} ms`, {
          url,
          cause: err,
        });
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      return new LicenseError(
        'unreachable',
        cause?.code ?? cause?.message ?? (err as Error).message,
        { url, cause: err },
      );
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return new LicenseError(
        'bad_response',
        `${url}${path} answered ${res.status} with something that is not JSON`,
        { url, status: res.status },
      );
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      return new LicenseError(
        'bad_response',
        `${url}${path} answered ${res.status} with JSON that is not an object`,
        { url, status: res.status },
      );
    }
    return { status: res.status, body: parsed as Record<string, unknown>, url };
  }
}

function envelopeError(a: Answer): LicenseError {
  const e = (
    a.body as {
      error?: { code?: unknown; message?: unknown; details?: unknown; request_id?: unknown };
    }
  ).error;
  if (!e || typeof e.code !== 'string')
    return new LicenseError(
      'bad_response',
      `${a.url} answered ${a.status} without an error envelope`,
      { url: a.url, status: a.status },
    );
  return new LicenseError(e.code, typeof e.message === 'string' ? e.message : e.code, {
    status: a.status,
    url: a.url,
    details:
      e.details && typeof e.details === 'object' ? (e.details as Record<string, unknown>) : {},
    ...(typeof e.request_id === 'string' ? { requestId: e.request_id } : {}),
  });
}

function readIssued(a: Answer): IssuedLease {
  const b = a.body;
  if (
    typeof b.lease_id !== 'string' ||
    typeof b.token !== 'string' ||
    typeof b.expires_at !== 'string' ||
    !Array.isArray(b.features)
  ) {
    throw new LicenseError(
      'bad_response',
      `${a.url} answered ${a.status} without lease_id, token, expires_at and features`,
      { url: a.url, status: a.status },
    );
  }
  return b as unknown as IssuedLease;
}

function readKeys(a: Answer): PublishedKey[] {
  const keys = (a.body as { keys?: unknown }).keys;
  if (!Array.isArray(keys))
    throw new LicenseError(
      'bad_response',
      `${a.url} answered /v1/license/keys without a keys array`,
      { url: a.url, status: a.status },
    );
  return keys as PublishedKey[];
}

export type LeaseState = 'active' | 'released' | 'revoked' | 'lost';

export interface LeaseEvents {
  /** A renewal succeeded: `token`, `claims` and `expiresAt` are new. */
  renewed: [lease: Lease];
  /** The lease ran out without a successful renewal (server gone too long, or it said lease_expired). */
  lost: [error: LicenseError];
  /** The server said the lease was released or revoked (410 lease_released): stop using it now. */
  revoked: [error: LicenseError];
  /** A renewal failed and will be retried (emitted only when someone listens). */
  error: [error: LicenseError];
}

/**
 * A granted lease: its verified token and claims, kept fresh in the background. Valid while
 * `valid` is true (state `active` and before `expiresAt`).
 */
export class Lease extends EventEmitter<LeaseEvents> {
  readonly id: string;
  readonly client: LicenseClient;
  readonly request: Omit<LeaseRequest, 'signal'>;
  token: string;
  claims: LeaseClaims;
  features: string[];
  state: LeaseState = 'active';
  #failures = 0;
  #timer: NodeJS.Timeout | undefined;
  #renewing: Promise<Lease> | undefined;

  /** @internal Made by LicenseClient.requestLease(). */
  constructor(client: LicenseClient, req: LeaseRequest, issued: IssuedLease, claims: LeaseClaims) {
    super();
    this.client = client;
    const { signal: _signal, ...rest } = req;
    this.request = rest;
    this.id = issued.lease_id;
    this.token = issued.token;
    this.claims = claims;
    this.features = issued.features;
  }

  /** When the current token expires (its `exp`). */
  get expiresAt(): Date {
    return this.claims.exp;
  }

  /** Borrowed for offline use: the token (and so `valid`) lasts to the end of the borrow. */
  get borrowed(): boolean {
    return this.claims.borrowed;
  }

  /** Granted past max_seats within the policy's overdraft_seats (the vendor bills it). */
  get overdraft(): boolean {
    return this.claims.overdraft;
  }

  /** The lease and, for a shared lease, this instance: the body of renew and release. */
  #ref(): { lease_id: string; instance_id?: string } {
    const instance = this.request.instanceId;
    return instance === undefined
      ? { lease_id: this.id }
      : { lease_id: this.id, instance_id: instance };
  }

  /** True while the lease may be used: active and its token not expired. */
  get valid(): boolean {
    return this.state === 'active' && Date.now() < this.claims.exp.getTime();
  }

  /**
   * Renews now (the background renewal calls this too). On success emits `renewed`.
   *
   * @throws LicenseError — `lease_released` (the lease is then `revoked`), `lease_expired` (then
   *   `lost`), or the failure of this attempt (retried in the background with backoff)
   */
  renew(): Promise<Lease> {
    if (this.state !== 'active')
      return Promise.reject(
        new LicenseError(
          this.state === 'released'
            ? 'lease_released'
            : this.state === 'revoked'
              ? 'lease_released'
              : 'lease_expired',
          `lease ${this.id} is ${this.state}`,
        ),
      );
    this.#renewing ??= this.#renew().finally(() => (this.#renewing = undefined));
    return this.#renewing;
  }

  async #renew(): Promise<Lease> {
    try {
      const a = await this.client.call('POST', '/v1/license/lease/renew', this.#ref(), undefined);
      const issued = readIssued(a);
      const claims = await this.client.verify(
        issued,
        a.url,
        this.request.product,
        this.request.tenant,
      );
      if (this.state !== 'active') return this;
      this.token = issued.token;
      this.claims = claims;
      this.features = issued.features;
      this.#failures = 0;
      this.schedule();
      this.emit('renewed', this);
      return this;
    } catch (err) {
      const e =
        err instanceof LicenseError
          ? err
          : new LicenseError('bad_response', (err as Error).message, { cause: err });
      if (this.state !== 'active') throw e;
      if (e.status === 410) {
        this.#end(e.code === 'lease_expired' ? 'lost' : 'revoked');
        this.emit(e.code === 'lease_expired' ? 'lost' : 'revoked', e);
        throw e;
      }
      this.#failures++;
      if (this.listenerCount('error') > 0) this.emit('error', e);
      this.#retryLater();
      throw e;
    }
  }

  /**
   * Gives the seat back (a borrow: early; a shared lease: this instance only, the seat when it
   * was the last). Idempotent; stops the renewals at once, even when no server answers.
   *
   * @throws LicenseError when no server could be told (the seat then frees at expiry)
   */
  async release(): Promise<void> {
    if (this.state === 'released') return;
    const wasActive = this.state === 'active';
    this.#end('released');
    if (!wasActive) return;
    try {
      await this.client.call('POST', '/v1/license/lease/release', this.#ref(), undefined);
    } catch (err) {
      // Already gone on the server: released is what we wanted.
      if (err instanceof LicenseError && err.status === 410) return;
      throw err;
    }
  }

  /** @internal (Re)arms the renewal timer after a grant or renewal. */
  schedule(): void {
    const left = this.claims.exp.getTime() - Date.now();
    const jitter = 0.9 + Math.random() * 0.2;
    this.#arm(Math.max(0, left * this.client.renewAt * jitter));
  }

  #retryLater(): void {
    const left = this.claims.exp.getTime() - Date.now();
    if (left <= 0) return this.#lose();
    // 1 s, 2 s, 4 s … up to 30 s, jittered, and never past the token's expiry.
    const backoff =
      Math.min(30_000, 1000 * 2 ** Math.min(this.#failures - 1, 5)) * (0.8 + Math.random() * 0.4);
    this.#arm(Math.min(backoff, left));
  }

  #arm(ms: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      if (this.state !== 'active') return;
      if (Date.now() >= this.claims.exp.getTime()) return this.#lose();
      this.renew().catch(() => {
        // Already handled in #renew: events emitted, retry armed.
      });
    }, ms);
    // A lease never keeps the process alive on its own.
    this.#timer.unref();
  }

  #lose(): void {
    this.#end('lost');
    this.emit(
      'lost',
      new LicenseError(
        'lease_expired',
        `lease ${this.id} expired at ${this.claims.exp.toISOString()} without a successful renewal`,
      ),
    );
  }

  #end(state: LeaseState): void {
    this.state = state;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    held.delete(this);
  }
}
