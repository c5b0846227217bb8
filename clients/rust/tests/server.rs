//! The SDK against the real executable (dist/bp-license-server, or BPLS_EXE): the seed's snippet,
//! offline verification, renew, release, failover, refusals, the lease guard, revocation, and the
//! example program. Each test starts its own server on 127.0.0.1 and kills it at the end.
use bigpicture_sdk::{verify_lease_token, Client, Error, GuardStatus, LeaseRequest, Subject, VerifyOptions};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Server {
    child: Child,
    url: String,
    token: String,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn exe() -> PathBuf {
    std::env::var_os("BPLS_EXE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../dist/bp-license-server"))
}

fn start() -> Server {
    start_on(0)
}

/// A new data dir served on `port` (0: any free one).
fn start_on(port: u16) -> Server {
    let dir = std::env::temp_dir().join(format!("bpls-sdk-rs-{}-{}", std::process::id(), rand_suffix()));
    let data = dir.join("data");
    let init = Command::new(exe()).args(["init", "--json", "--data-dir"]).arg(&data).output().expect("run the executable (build it: make binary)");
    assert!(init.status.success(), "init: {}", String::from_utf8_lossy(&init.stderr));
    let token = serde_json::from_slice::<Value>(&init.stdout).unwrap()["admin_token"].as_str().unwrap().to_owned();
    let (child, url) = serve(&data, port);
    Server { child, url, token, _dir: TempDir(dir) }
}

/// `serve` on an initialised data dir; the child and its URL.
fn serve(data: &std::path::Path, port: u16) -> (Child, String) {
    let mut child = Command::new(exe())
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string(), "--data-dir"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("first line: {:?}", line)).to_owned();
    (child, url)
}

/// Stops the server with SIGTERM (it drains and exits 0) and waits for it.
fn stop(s: &mut Server) {
    let _ = Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status();
    let _ = s.child.wait();
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

async fn admin(s: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let http = reqwest::Client::new();
    let url = format!("{}{}", s.url, path);
    let req = if method == "GET" { http.get(url) } else { http.post(url) }.bearer_auth(&s.token);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

async fn entitlement(s: &Server, tenant: &str, product: &str, policy: Value) {
    let (status, body) = admin(s, "POST", "/v1/entitlements", Some(json!({ "tenant_id": tenant, "product_id": product, "policy_json": policy, "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2099-12-31T23:59:59Z" }))).await;
    assert_eq!(status, 201, "{}", body);
}

async fn active_leases(s: &Server) -> Vec<String> {
    let (_, body) = admin(s, "GET", "/v1/leases?limit=500", None).await;
    body["data"].as_array().unwrap().iter().map(|l| l["lease_id"].as_str().unwrap().to_owned()).collect()
}

fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

#[tokio::test]
async fn the_seed_snippet_runs_as_written() -> Result<(), Box<dyn std::error::Error>> {
    let server = start();
    entitlement(&server, "your-tenant-id", "your-product-id", json!({ "type": "concurrent", "max_seats": 10, "features": ["feature-a", "feature-b"] })).await;
    let base = server.url.clone();

    let client = Client::builder()
        .base_url(base)
        .build()?;
    let lease = client.request_lease(
        "your-product-id",
        "your-tenant-id",
        Subject::user("user_123"),
    ).await?;

    assert!(lease.lease_id.starts_with("lease_"));
    assert_eq!(lease.features, vec!["feature-a", "feature-b"]);
    assert_eq!(lease.claims.aud, "your-product-id");
    assert_eq!(lease.claims.sub, "user:user_123");
    assert_eq!(lease.claims.jti, lease.lease_id);
    assert!(lease.is_valid());
    assert!(active_leases(&server).await.contains(&lease.lease_id));

    // Offline: the published keys alone verify the token; one changed character does not.
    let keys = client.keys().await?;
    let opts = VerifyOptions { product_id: Some("your-product-id".into()), ..Default::default() };
    assert_eq!(verify_lease_token(&lease.token, &keys, &opts)?.jti, lease.lease_id);
    let mut tampered = lease.token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(verify_lease_token(&tampered, &keys, &opts).is_err());
    let wrong = VerifyOptions { product_id: Some("other".into()), ..Default::default() };
    assert_eq!(verify_lease_token(&lease.token, &keys, &wrong).unwrap_err().code, "wrong_audience");

    let renewed = client.renew(&lease).await?;
    assert_eq!(renewed.lease_id, lease.lease_id);
    client.release(&lease.lease_id).await?;
    client.release(&lease.lease_id).await?; // idempotent
    assert!(!active_leases(&server).await.contains(&lease.lease_id));
    Ok(())
}

#[tokio::test]
async fn the_example_program_leases_renews_and_releases() {
    let server = start();
    entitlement(&server, "your-tenant-id", "your-product-id", json!({ "type": "concurrent", "max_seats": 10 })).await;
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/debug/examples/seed");
    let out = Command::new(&example).env("BIGPICTURE_URL", &server.url).output().unwrap_or_else(|e| panic!("{}: {}", example.display(), e));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{}", text, String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("released lease_"), "{}", text);
    assert!(active_leases(&server).await.is_empty());
}

#[tokio::test]
async fn fails_over_and_reports_refusals_with_the_servers_code() {
    let server = start();
    entitlement(&server, "solo", "cad", json!({ "type": "concurrent", "max_seats": 1 })).await;
    let client = Client::builder().base_url(dead_url()).base_url(server.url.clone()).build().unwrap();
    let first = client.request_lease("cad", "solo", Subject::machine("ws-01")).await.unwrap();
    assert_eq!(first.claims.subject_type, "machine");
    match client.request_lease("cad", "solo", Subject::machine("ws-02")).await {
        Err(Error::Server { status, code, request_id, .. }) => {
            assert_eq!((status, code.as_str()), (409, "seats_exhausted"));
            assert!(request_id.unwrap().starts_with("req_"));
        }
        other => panic!("expected seats_exhausted, got {:?}", other.map(|l| l.lease_id)),
    }
    let nobody = Client::builder().base_urls([dead_url(), dead_url()]).build().unwrap();
    match nobody.request_lease("cad", "solo", Subject::user("x")).await {
        Err(e @ Error::Unreachable { .. }) => {
            assert_eq!(e.code(), "unreachable");
            assert!(e.is_retryable());
            if let Error::Unreachable { attempts } = e {
                assert_eq!(attempts.len(), 2);
            }
        }
        other => panic!("expected unreachable, got {:?}", other.map(|l| l.lease_id)),
    }
    assert!(matches!(Client::builder().build(), Err(Error::Config(_))));
    assert!(matches!(Client::builder().base_url("ftp://x").build(), Err(Error::Config(_))));
}

#[tokio::test]
async fn a_lease_guard_renews_in_the_background_and_releases_on_drop() {
    let server = start();
    entitlement(&server, "acme", "cad", json!({ "type": "concurrent", "max_seats": 5, "lease_ttl_seconds": 5 })).await;
    let client = Client::builder().base_url(server.url.clone()).build().unwrap();
    let guard = client.lease_guard("cad", "acme", Subject::user("guarded")).await.unwrap();
    let id = guard.lease().lease_id;
    let first_exp = guard.lease().claims.exp;
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(guard.is_valid());
    assert_eq!(guard.status(), GuardStatus::Active);
    assert!(guard.renewals() >= 3, "{} renewals", guard.renewals());
    assert_eq!(guard.lease().lease_id, id);
    assert!(guard.lease().claims.exp > first_exp + Duration::from_secs(6));
    assert!(active_leases(&server).await.contains(&id));
    drop(guard);
    assert!(!active_leases(&server).await.contains(&id));
}

#[tokio::test]
async fn a_revoked_lease_is_seen_as_revoked() {
    let server = start();
    entitlement(&server, "acme", "cad", json!({ "type": "concurrent", "max_seats": 5, "lease_ttl_seconds": 5 })).await;
    let client = Client::builder().base_url(server.url.clone()).build().unwrap();
    let lease = client.request_lease("cad", "acme", Subject::user("revokee")).await.unwrap();
    let (status, _) = admin(&server, "POST", &format!("/v1/leases/{}/revoke", lease.lease_id), None).await;
    assert_eq!(status, 200);
    match client.renew(&lease).await {
        Err(Error::Server { status: 410, code, .. }) => assert_eq!(code, "lease_released"),
        other => panic!("expected 410 lease_released, got {:?}", other.map(|l| l.lease_id)),
    }

    let guard = client.lease_guard("cad", "acme", Subject::user("revokee-2")).await.unwrap();
    let (status, _) = admin(&server, "POST", &format!("/v1/leases/{}/revoke", guard.lease().lease_id), None).await;
    assert_eq!(status, 200);
    for _ in 0..40 {
        if guard.status() != GuardStatus::Active {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(guard.status(), GuardStatus::Revoked);
    assert!(!guard.is_valid());
}

#[tokio::test]
async fn a_lease_guard_renews_across_a_server_restart() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = start_on(port);
    entitlement(&server, "acme", "cad", json!({ "type": "concurrent", "max_seats": 5, "lease_ttl_seconds": 5 })).await;
    let client = Client::builder().base_url(server.url.clone()).build().unwrap();
    let guard = client.lease_guard("cad", "acme", Subject::user("restart")).await.unwrap();
    let id = guard.lease().lease_id;
    stop(&mut server);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let data = server._dir.0.join("data");
    let (child, _) = serve(&data, port);
    server.child = child;
    let before = guard.renewals();
    for _ in 0..40 {
        if guard.renewals() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(guard.renewals() > before, "no renewal after the restart");
    assert_eq!(guard.status(), GuardStatus::Active);
    assert_eq!(guard.lease().lease_id, id);
    assert!(active_leases(&server).await.contains(&id));
    guard.release().await.unwrap();
    assert!(!active_leases(&server).await.contains(&id));
}

#[tokio::test]
async fn with_the_server_gone_a_guarded_lease_stays_valid_until_exp_then_is_lost() {
    let mut server = start();
    entitlement(&server, "acme", "cad", json!({ "type": "concurrent", "max_seats": 5, "lease_ttl_seconds": 5 })).await;
    let client = Client::builder().base_url(server.url.clone()).timeout(Duration::from_secs(2)).build().unwrap();
    let guard = client.lease_guard("cad", "acme", Subject::user("orphan")).await.unwrap();
    let exp = guard.lease().claims.exp;
    let _ = server.child.kill();
    let _ = server.child.wait();
    let until_exp = exp.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO);
    tokio::time::sleep(until_exp.saturating_sub(Duration::from_millis(1500))).await;
    assert!(guard.is_valid(), "usable until its exp");
    assert_eq!(guard.status(), GuardStatus::Active);
    for _ in 0..40 {
        if guard.status() == GuardStatus::Lost {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(guard.status(), GuardStatus::Lost);
    assert!(!guard.is_valid());
    assert!(std::time::SystemTime::now() >= exp);
}

#[tokio::test]
async fn floating_extras_borrow_shared_instances_queue_and_overdraft() {
    let server = start();
    entitlement(&server, "float", "cad", json!({ "type": "concurrent", "max_seats": 1, "overdraft_seats": 1, "max_borrow_hours": 72 })).await;
    let client = Client::builder().base_url(server.url.clone()).build().unwrap();
    let req = |who: &str| LeaseRequest { product: "cad".into(), tenant: "float".into(), subject: Some(Subject::user(who)), ..Default::default() };

    // A laptop borrows for 3 days: its token lasts the borrow; release returns it early.
    let laptop = client.request_lease_with(LeaseRequest { borrow_hours: Some(72), ..req("laptop") }).await.unwrap();
    assert!(laptop.is_borrowed());
    assert!(!laptop.is_overdraft());
    let left = laptop.expires().duration_since(std::time::SystemTime::now()).unwrap();
    assert!(left > Duration::from_secs(71 * 3600), "{:?}", left);

    // Past max_seats, within overdraft_seats: marked.
    let over = client.request_lease("cad", "float", Subject::user("over")).await.unwrap();
    assert!(over.is_overdraft());
    client.release_lease(&laptop).await.unwrap();
    client.release_lease(&over).await.unwrap();

    // Two workstations share one lease; the first exits, the second keeps it.
    let ws1 = client.request_lease_with(LeaseRequest { instance_id: Some("ws1".into()), ..req("alice") }).await.unwrap();
    let ws2 = client.request_lease_with(LeaseRequest { instance_id: Some("ws2".into()), ..req("alice") }).await.unwrap();
    assert_eq!(ws1.lease_id, ws2.lease_id);
    client.release_lease(&ws1).await.unwrap();
    assert!(active_leases(&server).await.contains(&ws2.lease_id));
    let renewed = client.renew(&ws2).await.unwrap();
    assert_eq!(renewed.instance_id.as_deref(), Some("ws2"));

    // A queued request gets the seat the last instance frees.
    let other = client.request_lease("cad", "float", Subject::user("bob")).await.unwrap();
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.request_lease_with(LeaseRequest { wait_seconds: Some(20), ..req("carol") }).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.release_lease(&renewed).await.unwrap();
    assert!(!active_leases(&server).await.contains(&ws2.lease_id));
    let carol = waiting.await.unwrap().unwrap();
    assert!(carol.is_valid());
    client.release_lease(&carol).await.unwrap();
    client.release_lease(&other).await.unwrap();
}
