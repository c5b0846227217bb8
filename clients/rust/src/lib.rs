//! Client SDK for the Big Picture local license server.
//!
//! ```no_run
//! use bigpicture_sdk::Client;
//! use bigpicture_sdk::Subject;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder()
//!     .base_url("https://license-server.example.com")
//!     .build()?;
//! let lease = client.request_lease(
//!     "your-product-id",
//!     "your-tenant-id",
//!     Subject::user("user_123"),
//! ).await?;
//! # Ok(()) }
//! ```
//!
//! Every token the client receives is verified offline with the server's published keys (key id
//! recomputed, PAE, Ed25519, strict JSON: the server verifier's rules) before it is handed over.
//! [`LeaseGuard`] renews a lease in the background and releases it when dropped.

pub mod claims;
pub mod json;
pub mod paseto;

pub use claims::{parse_rfc3339, verify_lease_token, LeaseClaims, PublishedKey, VerifyOptions, LEASE_TOKEN_TYPE};

use serde_json::{json, Value};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A token, key or claim that failed verification. `code` is one of the server verifier's codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub code: &'static str,
    pub message: String,
}

impl TokenError {
    pub fn new(code: &'static str, message: String) -> Self {
        TokenError { code, message }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for TokenError {}

/// What a call to the license server fails with.
#[derive(Debug)]
pub enum Error {
    /// The server refused, with its error envelope: `code` is stable (`seats_exhausted`,
    /// `seat_not_assigned`, `entitlement_inactive`, `lease_released`, `lease_expired`, …).
    Server { status: u16, code: String, message: String, details: Value, request_id: Option<String>, url: String },
    /// No server URL answered: each attempt with its URL and why.
    Unreachable { attempts: Vec<(String, String)> },
    /// The server did not answer in time.
    Timeout { url: String },
    /// An answer that is not the server's JSON.
    BadResponse { url: String, message: String },
    /// The server's token failed offline verification.
    Token(TokenError),
    /// The client was built wrong (no URL, a URL that is not http(s)).
    Config(String),
}

impl Error {
    /// The server's error code, or the client's own: `unreachable`, `timeout`, `bad_response`,
    /// `token_rejected`, `config`.
    pub fn code(&self) -> &str {
        match self {
            Error::Server { code, .. } => code,
            Error::Unreachable { .. } => "unreachable",
            Error::Timeout { .. } => "timeout",
            Error::BadResponse { .. } => "bad_response",
            Error::Token(_) => "token_rejected",
            Error::Config(_) => "config",
        }
    }

    /// True when trying again later or elsewhere may succeed (network trouble, 5xx, 429).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Server { status, .. } => *status >= 500 || *status == 429,
            Error::Unreachable { .. } | Error::Timeout { .. } | Error::BadResponse { .. } => true,
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Server { status, code, message, .. } => write!(f, "license server refused ({} {}): {}", status, code, message),
            Error::Unreachable { attempts } => {
                write!(f, "no license server answered")?;
                for (url, why) in attempts {
                    write!(f, "; {}: {}", url, why)?;
                }
                Ok(())
            }
            Error::Timeout { url } => write!(f, "{} did not answer in time", url),
            Error::BadResponse { url, message } => write!(f, "{} answered with something unexpected: {}", url, message),
            Error::Token(e) => write!(f, "the lease token failed offline verification: {}", e),
            Error::Config(m) => write!(f, "client configuration: {}", m),
        }
    }
}

impl std::error::Error for Error {}

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// `user` or `machine`.
    pub kind: &'static str,
    pub id: String,
}

impl Subject {
    /// A person (per_user seats).
    pub fn user(id: impl Into<String>) -> Self {
        Subject { kind: "user", id: id.into() }
    }
    /// A machine (per_machine seats), e.g. its host name.
    pub fn machine(id: impl Into<String>) -> Self {
        Subject { kind: "machine", id: id.into() }
    }
}

/// A granted lease with its verified claims.
#[derive(Debug, Clone)]
pub struct Lease {
    pub lease_id: String,
    pub token: String,
    /// RFC 3339, as the server sent it.
    pub expires_at: String,
    pub features: Vec<String>,
    pub claims: LeaseClaims,
    /// This instance of the subject on a shared lease (renew and release name it), if any.
    pub instance_id: Option<String>,
    product: String,
    tenant: String,
}

impl Lease {
    /// When the token expires.
    pub fn expires(&self) -> SystemTime {
        self.claims.exp
    }
    /// True until the token's `exp`.
    pub fn is_valid(&self) -> bool {
        SystemTime::now() < self.claims.exp
    }
    /// Borrowed for offline use: valid until the end of the borrow without the server.
    pub fn is_borrowed(&self) -> bool {
        self.claims.borrowed
    }
    /// Granted past max_seats (within the policy's overdraft_seats).
    pub fn is_overdraft(&self) -> bool {
        self.claims.overdraft
    }
    /// The body of renew and release: the lease, and this instance of a shared one.
    fn reference(&self) -> Value {
        match &self.instance_id {
            Some(i) => json!({ "lease_id": self.lease_id, "instance_id": i }),
            None => json!({ "lease_id": self.lease_id }),
        }
    }
}

/// Options beyond the seed's three arguments.
#[derive(Debug, Clone, Default)]
pub struct LeaseRequest {
    pub product: String,
    pub tenant: String,
    pub subject: Option<Subject>,
    pub features: Vec<String>,
    pub entitlement_id: Option<String>,
    /// Borrow the seat for offline use: the lease and token last this many hours (up to the
    /// policy's max_borrow_hours).
    pub borrow_hours: Option<u32>,
    /// This instance's id when one subject runs several: they share one lease and seat.
    pub instance_id: Option<String>,
    /// With every seat in use, wait up to this many seconds (1-300) in the server's queue.
    pub wait_seconds: Option<u32>,
}

/// Builds a [`Client`]: `Client::builder().base_url(..).build()?`.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    urls: Vec<String>,
    timeout: Duration,
    leeway: Duration,
}

impl ClientBuilder {
    /// A license server URL. Call again to add more: calls fail over in order.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }
    /// Several URLs at once (failover in order).
    pub fn base_urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.urls.extend(urls.into_iter().map(Into::into));
        self
    }
    /// Time limit of one HTTP call to one server (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Clock difference tolerated with the server for `nbf`/`exp` (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }
    /// Checks the URLs and makes the client.
    pub fn build(self) -> Result<Client, Error> {
        if self.urls.is_empty() {
            return Err(Error::Config("give at least one base_url".into()));
        }
        let mut urls = Vec::new();
        for u in self.urls {
            let parsed = reqwest::Url::parse(&u).map_err(|e| Error::Config(format!("{} is not a URL: {}", u, e)))?;
            if parsed.scheme() != "http" && parsed.scheme() != "https" {
                return Err(Error::Config(format!("{} is not an http(s) URL", u)));
            }
            urls.push(u.trim_end_matches('/').to_owned());
        }
        let http = reqwest::Client::builder().timeout(self.timeout).build().map_err(|e| Error::Config(e.to_string()))?;
        Ok(Client { inner: Arc::new(Inner { http, urls, preferred: AtomicUsize::new(0), keys: Mutex::new(Vec::new()), leeway: self.leeway, timeout: self.timeout }) })
    }
}

struct Inner {
    http: reqwest::Client,
    urls: Vec<String>,
    preferred: AtomicUsize,
    keys: Mutex<Vec<(String, Vec<PublishedKey>)>>,
    leeway: Duration,
    timeout: Duration,
}

/// A client of one license service; cheap to clone (shared connection pool and key cache).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Answer {
    status: u16,
    body: Value,
    url: String,
}

impl Client {
    pub fn builder() -> ClientBuilder {
        ClientBuilder { urls: Vec::new(), timeout: Duration::from_secs(10), leeway: Duration::from_secs(60) }
    }

    /// The server URLs, in failover order.
    pub fn base_urls(&self) -> &[String] {
        &self.inner.urls
    }

    /// Asks for a lease and verifies its token offline. The seed tutorial's call.
    pub async fn request_lease(&self, product: &str, tenant: &str, subject: Subject) -> Result<Lease, Error> {
        self.request_lease_with(LeaseRequest { product: product.into(), tenant: tenant.into(), subject: Some(subject), ..Default::default() }).await
    }

    /// [`Client::request_lease`] with features or a pinned entitlement.
    pub async fn request_lease_with(&self, req: LeaseRequest) -> Result<Lease, Error> {
        let subject = req.subject.clone().ok_or_else(|| Error::Config("a lease request needs a subject".into()))?;
        let mut body = json!({ "product_id": req.product, "tenant_id": req.tenant, "subject_type": subject.kind, "subject_id": subject.id });
        if !req.features.is_empty() {
            body["features"] = json!(req.features);
        }
        if let Some(e) = &req.entitlement_id {
            body["entitlement_id"] = json!(e);
        }
        if let Some(h) = req.borrow_hours {
            body["borrow_hours"] = json!(h);
        }
        if let Some(i) = &req.instance_id {
            body["instance_id"] = json!(i);
        }
        if let Some(w) = req.wait_seconds {
            body["wait_seconds"] = json!(w);
        }
        // A queued request may be answered only at its deadline: the time limit waits that long too.
        let wait = Duration::from_secs(req.wait_seconds.unwrap_or(0).into());
        let a = self.call_waiting("POST", "/v1/license/lease", Some(body), wait).await?;
        let mut lease = self.lease_from(a, &req.product, &req.tenant).await?;
        lease.instance_id = req.instance_id;
        Ok(lease)
    }

    /// Renews a lease: a new token and expiry under the same lease id.
    pub async fn renew(&self, lease: &Lease) -> Result<Lease, Error> {
        let a = self.call("POST", "/v1/license/lease/renew", Some(lease.reference())).await?;
        let mut renewed = self.lease_from(a, &lease.product, &lease.tenant).await?;
        renewed.instance_id = lease.instance_id.clone();
        if renewed.lease_id != lease.lease_id {
            return Err(Error::Token(TokenError::new("bad_claims", "the renewal answered for another lease".into())));
        }
        Ok(renewed)
    }

    /// Gives the seat back. Idempotent: a lease already released or expired is fine.
    pub async fn release(&self, lease_id: &str) -> Result<(), Error> {
        self.release_body(json!({ "lease_id": lease_id })).await
    }

    /// Releases a lease as it was granted: a borrow early; on a shared lease this instance only
    /// (the seat frees with the last instance). Idempotent.
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), Error> {
        self.release_body(lease.reference()).await
    }

    async fn release_body(&self, body: Value) -> Result<(), Error> {
        match self.call("POST", "/v1/license/lease/release", Some(body)).await {
            Ok(_) => Ok(()),
            Err(Error::Server { status: 410, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The server's published keys (`GET /v1/license/keys`).
    pub async fn keys(&self) -> Result<Vec<PublishedKey>, Error> {
        let a = self.call("GET", "/v1/license/keys", None).await?;
        read_keys(&a)
    }

    /// A lease that renews itself in the background and is released when the guard is dropped.
    pub async fn lease_guard(&self, product: &str, tenant: &str, subject: Subject) -> Result<LeaseGuard, Error> {
        let lease = self.request_lease(product, tenant, subject).await?;
        Ok(LeaseGuard::start(self.clone(), lease))
    }

    async fn lease_from(&self, a: Answer, product: &str, tenant: &str) -> Result<Lease, Error> {
        let bad = |m: &str| Error::BadResponse { url: a.url.clone(), message: m.into() };
        let field = |k: &str| a.body.get(k).and_then(Value::as_str).map(str::to_owned);
        let lease_id = field("lease_id").ok_or_else(|| bad("no lease_id"))?;
        let token = field("token").ok_or_else(|| bad("no token"))?;
        let expires_at = field("expires_at").ok_or_else(|| bad("no expires_at"))?;
        let features = a
            .body
            .get("features")
            .and_then(Value::as_array)
            .and_then(|f| f.iter().map(|x| x.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>())
            .ok_or_else(|| bad("no features"))?;
        let claims = self.verify(&token, &a.url, product, tenant).await?;
        if claims.jti != lease_id {
            return Err(Error::Token(TokenError::new("bad_claims", format!("the token is for lease {}, not {}", claims.jti, lease_id))));
        }
        Ok(Lease { lease_id, token, expires_at, features, claims, instance_id: None, product: product.into(), tenant: tenant.into() })
    }

    /// Verifies with the answering server's keys; fetches them again once for an unknown kid.
    async fn verify(&self, token: &str, url: &str, product: &str, tenant: &str) -> Result<LeaseClaims, Error> {
        let opts = VerifyOptions { product_id: Some(product.into()), tenant_id: Some(tenant.into()), now: None, leeway: self.inner.leeway };
        let cached = self.inner.keys.lock().unwrap().iter().find(|(u, _)| u == url).map(|(_, k)| k.clone());
        if let Some(keys) = cached {
            match verify_lease_token(token, &keys, &opts) {
                Ok(c) => return Ok(c),
                Err(e) if e.code != "unknown_key" => return Err(Error::Token(e)),
                Err(_) => {}
            }
        }
        let keys = self.fetch_keys(url).await?;
        verify_lease_token(token, &keys, &opts).map_err(Error::Token)
    }

    async fn fetch_keys(&self, url: &str) -> Result<Vec<PublishedKey>, Error> {
        let a = self.once(url, "GET", "/v1/license/keys", None).await?;
        if a.status != 200 {
            return Err(envelope_error(a));
        }
        let keys = read_keys(&a)?;
        let mut cache = self.inner.keys.lock().unwrap();
        cache.retain(|(u, _)| u != url);
        cache.push((url.to_owned(), keys.clone()));
        Ok(keys)
    }

    /// One call with failover: each URL once, starting with the one that answered last. A 4xx
    /// is final; unreachable, time-out and 5xx move on.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Answer, Error> {
        self.call_waiting(method, path, body, Duration::ZERO).await
    }

    /// [`Client::call`] whose time limit per server is longer by `wait` (a queued lease request).
    async fn call_waiting(&self, method: &str, path: &str, body: Option<Value>, wait: Duration) -> Result<Answer, Error> {
        let n = self.inner.urls.len();
        let start = self.inner.preferred.load(Ordering::Relaxed);
        let mut attempts = Vec::new();
        let mut last_server: Option<Error> = None;
        for i in 0..n {
            let index = (start + i) % n;
            let url = &self.inner.urls[index];
            match self.once_waiting(url, method, path, body.clone(), wait).await {
                Ok(a) if a.status >= 500 => {
                    let e = envelope_error(a);
                    attempts.push((url.clone(), e.to_string()));
                    last_server = Some(e);
                }
                Ok(a) => {
                    self.inner.preferred.store(index, Ordering::Relaxed);
                    if a.status >= 400 {
                        return Err(envelope_error(a));
                    }
                    return Ok(a);
                }
                Err(e) => attempts.push((url.clone(), e.to_string())),
            }
        }
        if let Some(e) = last_server {
            return Err(e);
        }
        Err(Error::Unreachable { attempts })
    }

    async fn once(&self, url: &str, method: &str, path: &str, body: Option<Value>) -> Result<Answer, Error> {
        self.once_waiting(url, method, path, body, Duration::ZERO).await
    }

    async fn once_waiting(&self, url: &str, method: &str, path: &str, body: Option<Value>, wait: Duration) -> Result<Answer, Error> {
        let full = format!("{}{}", url, path);
        let req = if method == "GET" { self.inner.http.get(&full) } else { self.inner.http.post(&full) };
        let req = if wait.is_zero() { req } else { req.timeout(self.inner.timeout + wait) };
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let res = req.send().await.map_err(|e| net_error(url, e))?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|e| net_error(url, e))?;
        let body: Value = serde_json::from_str(&text).map_err(|_| Error::BadResponse { url: url.into(), message: format!("status {} with a body that is not JSON", status) })?;
        if !body.is_object() {
            return Err(Error::BadResponse { url: url.into(), message: format!("status {} with JSON that is not an object", status) });
        }
        Ok(Answer { status, body, url: url.into() })
    }
}

fn net_error(url: &str, e: reqwest::Error) -> Error {
    if e.is_timeout() {
        Error::Timeout { url: url.into() }
    } else {
        Error::Unreachable { attempts: vec![(url.into(), e.to_string())] }
    }
}

fn envelope_error(a: Answer) -> Error {
    let e = a.body.get("error");
    match e.and_then(|e| e.get("code")).and_then(Value::as_str) {
        Some(code) => Error::Server {
            status: a.status,
            code: code.into(),
            message: e.and_then(|e| e.get("message")).and_then(Value::as_str).unwrap_or(code).into(),
            details: e.and_then(|e| e.get("details")).cloned().unwrap_or(Value::Null),
            request_id: e.and_then(|e| e.get("request_id")).and_then(Value::as_str).map(str::to_owned),
            url: a.url,
        },
        None => Error::BadResponse { url: a.url, message: format!("status {} without an error envelope", a.status) },
    }
}

fn read_keys(a: &Answer) -> Result<Vec<PublishedKey>, Error> {
    let keys = a.body.get("keys").cloned().ok_or_else(|| Error::BadResponse { url: a.url.clone(), message: "no keys array".into() })?;
    serde_json::from_value(keys).map_err(|e| Error::BadResponse { url: a.url.clone(), message: format!("keys: {}", e) })
}

/// Where a guarded lease stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardStatus {
    Active,
    /// Expired without a successful renewal (server gone too long, or it said lease_expired).
    Lost,
    /// The server said the lease was released or revoked (410 lease_released).
    Revoked,
    Released,
}

struct GuardState {
    lease: Lease,
    status: GuardStatus,
    renewals: u64,
}

/// A lease renewed in the background (at about half its remaining time, jittered; on failure
/// with backoff and failover, never past the token's expiry) and released when dropped. Drop
/// releases from a short-lived thread of its own (up to the client's timeout per URL), so it works
/// even while the async runtime shuts down; prefer `guard.release().await` where you can.
pub struct LeaseGuard {
    client: Client,
    state: Arc<Mutex<GuardState>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn jitter(base: Duration, spread: f64) -> Duration {
    // Not a security use: the sub-second clock is random enough to spread a fleet's renewals.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let f = 1.0 - spread + 2.0 * spread * (nanos as f64 / 1e9);
    base.mul_f64(f)
}

impl LeaseGuard {
    fn start(client: Client, lease: Lease) -> Self {
        let state = Arc::new(Mutex::new(GuardState { lease, status: GuardStatus::Active, renewals: 0 }));
        let task = tokio::spawn(renew_loop(client.clone(), state.clone()));
        LeaseGuard { client, state, task: Some(task) }
    }

    /// The current lease (its token changes at each renewal; the id does not).
    pub fn lease(&self) -> Lease {
        self.state.lock().unwrap().lease.clone()
    }
    pub fn status(&self) -> GuardStatus {
        self.state.lock().unwrap().status
    }
    /// Successful background renewals so far.
    pub fn renewals(&self) -> u64 {
        self.state.lock().unwrap().renewals
    }
    /// Active and before the token's expiry.
    pub fn is_valid(&self) -> bool {
        let s = self.state.lock().unwrap();
        s.status == GuardStatus::Active && s.lease.is_valid()
    }

    /// Stops renewing and releases now.
    pub async fn release(mut self) -> Result<(), Error> {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let (lease, was_active) = {
            let mut s = self.state.lock().unwrap();
            let was = s.status == GuardStatus::Active;
            s.status = GuardStatus::Released;
            (s.lease.clone(), was)
        };
        if was_active {
            self.client.release_lease(&lease).await
        } else {
            Ok(())
        }
    }
}

async fn renew_loop(client: Client, state: Arc<Mutex<GuardState>>) {
    let mut failures: u32 = 0;
    loop {
        let (lease, exp) = {
            let s = state.lock().unwrap();
            (s.lease.clone(), s.lease.claims.exp)
        };
        let left = exp.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
        if left.is_zero() {
            state.lock().unwrap().status = GuardStatus::Lost;
            return;
        }
        let wait = if failures == 0 {
            jitter(left / 2, 0.1)
        } else {
            jitter(Duration::from_secs(1 << (failures - 1).min(5)).min(Duration::from_secs(30)), 0.2).min(left)
        };
        tokio::time::sleep(wait).await;
        if SystemTime::now() >= exp {
            state.lock().unwrap().status = GuardStatus::Lost;
            return;
        }
        match client.renew(&lease).await {
            Ok(new) => {
                failures = 0;
                let mut s = state.lock().unwrap();
                if s.status != GuardStatus::Active {
                    return;
                }
                s.lease = new;
                s.renewals += 1;
            }
            Err(Error::Server { status: 410, code, .. }) => {
                state.lock().unwrap().status = if code == "lease_expired" { GuardStatus::Lost } else { GuardStatus::Revoked };
                return;
            }
            Err(_) => failures += 1,
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let (body, active) = {
            let s = self.state.lock().unwrap();
            (s.lease.reference(), s.status == GuardStatus::Active)
        };
        if !active {
            return;
        }
        let urls = self.client.inner.urls.clone();
        let timeout = self.client.inner.timeout.min(Duration::from_secs(3));
        // A thread with its own small runtime: Drop cannot await, and the caller's runtime may be
        // shutting down. Bounded by the timeout per URL.
        let handle = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(_) => return,
            };
            rt.block_on(async move {
                let http = match reqwest::Client::builder().timeout(timeout).build() {
                    Ok(h) => h,
                    Err(_) => return,
                };
                for url in urls {
                    let sent = http.post(format!("{}/v1/license/lease/release", url)).json(&body).send().await;
                    if matches!(sent, Ok(r) if r.status().as_u16() < 500) {
                        return;
                    }
                }
            });
        });
        let _ = handle.join();
    }
}
