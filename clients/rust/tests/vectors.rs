//! The official PASETO v4 and PASERK k4 vectors (test/fixtures/paseto, copied from the
//! paseto-standard test-vectors repository), and the rejections the server's verifier makes.
use bigpicture_sdk::paseto::{check_public_key, decode_base64url, encode_base64url, pae, paserk_pid, parse_paserk_public, verify_v4_public};
use serde_json::Value;

fn fixture(name: &str) -> Vec<Value> {
    let path = format!("{}/../../test/fixtures/paseto/{}", env!("CARGO_MANIFEST_DIR"), name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {}", path, e));
    let v: Value = serde_json::from_str(&text).unwrap();
    v["tests"].as_array().unwrap().clone()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn v4_public_vectors_verify_and_the_failing_ones_fail() {
    let mut checked = 0;
    for t in fixture("v4.json") {
        let Some(pk) = t.get("public-key").and_then(Value::as_str) else { continue };
        let token = t["token"].as_str().unwrap();
        let implicit = t["implicit-assertion"].as_str().unwrap_or("");
        let r = verify_v4_public(token, &hex(pk), implicit.as_bytes());
        if t["expect-fail"].as_bool().unwrap() {
            assert!(r.is_err(), "{} verified but must fail", t["name"]);
        } else {
            let v = r.unwrap_or_else(|e| panic!("{}: {}", t["name"], e));
            assert_eq!(String::from_utf8(v.message).unwrap(), t["payload"].as_str().unwrap(), "{}", t["name"]);
            assert_eq!(String::from_utf8(v.footer).unwrap(), t["footer"].as_str().unwrap(), "{}", t["name"]);
        }
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[test]
fn local_tokens_are_the_wrong_purpose() {
    let t = fixture("v4.json").into_iter().find(|t| t["name"] == "4-E-1").unwrap();
    let err = verify_v4_public(t["token"].as_str().unwrap(), &[1; 32], b"").err().unwrap();
    assert_eq!(err.code, "wrong_purpose");
}

#[test]
fn k4_pid_and_public_vectors() {
    for t in fixture("k4.pid.json") {
        let key = t["key"].as_str().unwrap();
        let r = paserk_pid(&format!("k4.public.{}", encode_base64url(&hex(key))));
        if t["expect-fail"].as_bool().unwrap() {
            assert!(r.is_err(), "{}", t["name"]);
        } else {
            assert_eq!(r.unwrap(), t["paserk"].as_str().unwrap(), "{}", t["name"]);
        }
    }
    for t in fixture("k4.public.json") {
        if t["expect-fail"].as_bool().unwrap() {
            continue;
        }
        assert_eq!(format!("k4.public.{}", encode_base64url(&hex(t["key"].as_str().unwrap()))), t["paserk"].as_str().unwrap(), "{}", t["name"]);
    }
}

#[test]
fn small_order_and_non_canonical_keys_are_refused() {
    // The identity (y = 1), the all-zero key, y = p-1, an order-8 point, and y = p (not canonical).
    let mut p = hex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
    for k in [hex(&format!("01{}", "00".repeat(31))), vec![0; 32], hex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), hex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), p.clone()] {
        assert_eq!(check_public_key(&k).unwrap_err().code, "bad_key");
    }
    p[31] |= 0x80;
    assert_eq!(check_public_key(&p).unwrap_err().code, "bad_key");
    assert_eq!(parse_paserk_public(&format!("k4.public.{}", encode_base64url(&[0; 32]))).unwrap_err().code, "bad_key");
    // A forged token under the identity key: R = identity, S = 0 would verify without the screen.
    let mut forged = vec![b'{', b'}'];
    forged.extend_from_slice(&hex(&format!("01{}", "00".repeat(63))));
    let token = format!("v4.public.{}", encode_base64url(&forged));
    assert_eq!(verify_v4_public(&token, &hex(&format!("01{}", "00".repeat(31))), b"").err().unwrap().code, "bad_key");
}

#[test]
fn non_canonical_base64_is_refused() {
    assert!(decode_base64url("AA", "x").is_ok());
    for bad in ["AB", "AA==", "A", "A+", "A/", "A A"] {
        assert!(decode_base64url(bad, "x").is_err(), "{}", bad);
    }
}

#[test]
fn pae_matches_the_spec_examples() {
    assert_eq!(pae(&[]), hex("0000000000000000"));
    assert_eq!(pae(&[b""]), hex("01000000000000000000000000000000"));
    assert_eq!(pae(&[b"test"]), hex("0100000000000000040000000000000074657374"));
}
