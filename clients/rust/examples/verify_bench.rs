//! Lease-token verifications per second on one thread (used by `make bench`):
//!   cargo run --release --example verify_bench -- token.json 2000
//! token.json holds {"token", "keys", "product"}. Prints one JSON line.
use bigpicture_sdk::{verify_lease_token, PublishedKey, VerifyOptions};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let input: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&args[1]).expect("token file")).expect("token JSON");
    let ms: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let token = input["token"].as_str().unwrap().to_owned();
    let keys: Vec<PublishedKey> = serde_json::from_value(input["keys"].clone()).unwrap();
    let opts = VerifyOptions { product_id: input["product"].as_str().map(str::to_owned), ..Default::default() };
    verify_lease_token(&token, &keys, &opts).expect("the token verifies");
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < Duration::from_millis(ms) {
        for _ in 0..100 {
            verify_lease_token(&token, &keys, &opts).unwrap();
        }
        n += 100;
    }
    let per_s = n as f64 / start.elapsed().as_secs_f64();

    // The ceiling: ring's Ed25519 verify alone, on a message of a lease token's size.
    use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let msg = [7u8; 400];
    let sig = pair.sign(&msg);
    let public = UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref().to_vec());
    let start = Instant::now();
    let mut m: u64 = 0;
    while start.elapsed() < Duration::from_millis(ms) {
        for _ in 0..100 {
            public.verify(&msg, sig.as_ref()).unwrap();
        }
        m += 100;
    }
    println!("{{\"verify_per_s\": {:.0}, \"raw_ed25519_verify_per_s\": {:.0}}}", per_s, m as f64 / start.elapsed().as_secs_f64());
}
